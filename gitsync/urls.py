"""Which repository URLs the server may fetch from (pure).

The server fetches what users name, so a URL must be ``https://`` (``http://`` only when
configured, for local test servers) on an allowed host, without credentials in it (they
would end up in logs and process lists: tokens are given apart), without a query or
fragment, and never a local path, ``file://``, ``ext::`` or an option (``-u...``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from gitsync.config import GitConfig

PROVIDER_HOSTS = {"github.com": "github", "gitlab.com": "gitlab", "bitbucket.org": "bitbucket"}
# The user name each host expects beside an OAuth or access token.
TOKEN_USERNAMES = {"github": "x-access-token", "gitlab": "oauth2", "bitbucket": "x-token-auth"}
_PATH = re.compile(r"^/[A-Za-z0-9._~/-]+$")


class BadUrl(ValueError):
    pass


@dataclass(frozen=True)
class RepositoryUrl:
    url: str
    host: str
    full_name: str  # "owner/repo"
    provider: str | None  # from the host, when it is one of the known ones


def parse(raw: str, config: GitConfig) -> RepositoryUrl:
    text = raw.strip()
    if text.startswith("-") or "::" in text:
        raise BadUrl("not a repository URL")
    parts = urlsplit(text)
    schemes = ("https", "http") if config.allow_http else ("https",)
    if parts.scheme not in schemes:
        raise BadUrl(f"the URL must start with {' or '.join(s + '://' for s in schemes)}")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise BadUrl("put the token in the token field, not in the URL")
    if parts.query or parts.fragment:
        raise BadUrl("a repository URL has no query or fragment")
    host = (parts.hostname or "").lower()
    if host not in config.allowed_hosts:
        raise BadUrl(f"repositories on {host or 'this host'} are not allowed here")
    path = parts.path.rstrip("/")
    if not _PATH.match(path) or ".." in path or "//" in path:
        raise BadUrl("the repository path is not valid")
    full_name = path.lstrip("/").removesuffix(".git")
    if "/" not in full_name:
        raise BadUrl("the URL names no repository (owner/name)")
    try:
        port = parts.port
    except ValueError:
        raise BadUrl("the port is not valid") from None
    netloc = host if port is None else f"{host}:{port}"
    return RepositoryUrl(f"{parts.scheme}://{netloc}{path}", host, full_name,
                         PROVIDER_HOSTS.get(host))
