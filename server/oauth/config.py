"""Which OAuth providers are offered and where they live (from the environment).

A provider is offered when its client id is set (``GITHUB_CLIENT_ID``...); with none set,
``GET /api/v1/auth/providers`` is empty and ``make run`` needs no account anywhere. Base URLs
are overridable so tests (and self-hosted GitLab) point at other servers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ProviderSettings:
    client_id: str | None = None
    client_secret: str | None = None
    # Where the browser is sent and the token endpoint lives (Google: the OIDC issuer).
    base_url: str = ""
    # The REST API used for the user's identity (and, later, repositories).
    api_url: str = ""

    @property
    def offered(self) -> bool:
        return bool(self.client_id)


def _provider(
    env: Mapping[str, str], prefix: str, base_url: str, api_url: str
) -> ProviderSettings:
    base = (env.get(f"{prefix}_URL") or base_url).rstrip("/")
    return ProviderSettings(
        client_id=env.get(f"{prefix}_CLIENT_ID") or None,
        client_secret=env.get(f"{prefix}_CLIENT_SECRET") or None,
        base_url=base,
        api_url=(env.get(f"{prefix}_API_URL") or api_url or base).rstrip("/"),
    )


@dataclass(frozen=True)
class OAuthConfig:
    github: ProviderSettings = field(default_factory=lambda: ProviderSettings(
        base_url="https://github.com", api_url="https://api.github.com"))
    gitlab: ProviderSettings = field(default_factory=lambda: ProviderSettings(
        base_url="https://gitlab.com", api_url="https://gitlab.com/api/v4"))
    bitbucket: ProviderSettings = field(default_factory=lambda: ProviderSettings(
        base_url="https://bitbucket.org", api_url="https://api.bitbucket.org/2.0"))
    google: ProviderSettings = field(default_factory=lambda: ProviderSettings(
        base_url="https://accounts.google.com", api_url="https://accounts.google.com"))
    # Where browsers reach this server (the redirect URI's origin). Unset: the origin of
    # the request that starts the flow (fine for one host; set it behind a proxy).
    public_url: str | None = None
    flow_ttl_s: int = 600
    grant_ttl_s: int = 120
    # An access token expiring within this many seconds is refreshed before use.
    refresh_margin_s: int = 300
    http_timeout_s: float = 10.0

    def settings_for(self, name: str) -> ProviderSettings:
        found: ProviderSettings = getattr(self, name)
        return found

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> OAuthConfig:
        gitlab_base = (env.get("GITLAB_URL") or "https://gitlab.com").rstrip("/")
        return cls(
            github=_provider(env, "GITHUB", "https://github.com", "https://api.github.com"),
            gitlab=_provider(env, "GITLAB", gitlab_base, gitlab_base + "/api/v4"),
            bitbucket=_provider(
                env, "BITBUCKET", "https://bitbucket.org", "https://api.bitbucket.org/2.0"
            ),
            google=_provider(
                env, "GOOGLE", env.get("GOOGLE_ISSUER") or "https://accounts.google.com", ""
            ),
            public_url=(env.get("PUBLIC_URL") or "").rstrip("/") or None,
        )
