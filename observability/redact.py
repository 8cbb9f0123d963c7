"""Credentials out of anything logged, stored or sent: query parameters, bearer headers,
JWTs, passwords in URLs, secret-named keys.

The one implementation for the whole code base: log handlers (``server.redaction``'s
``RedactingFilter``, uvicorn's access log included), ``error_logs`` rows and Sentry events,
analytics page URLs. Sockets authenticate with ``?token=JWT`` (browsers cannot set headers on
a WebSocket), so a URL is the usual carrier. ``api_logs`` stores no query string, header or
body at all. Pure functions, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

REDACTED = "REDACTED"

# Parameter and key names that carry a credential (compared lower-cased, '-' as '_').
SENSITIVE_NAMES = frozenset({
    "token", "access_token", "refresh_token", "id_token", "jwt", "code", "password",
    "passwd", "pass", "secret", "client_secret", "key", "api_key", "apikey", "signature",
    "sig", "auth", "authorization", "credential", "credentials", "session", "session_id",
    "sessionid", "otp", "ticket", "cookie", "set_cookie", "dsn",
})
SENSITIVE_SUFFIXES = ("_token", "_key", "_secret", "_password", "_signature", "_credential")

# name=value in a query string, or standing alone in a message ("password=x rejected"); the
# value ends at a separator, whitespace or a quote.
_PARAM = re.compile(
    r"(?P<lead>^|[?&;\s])(?P<name>[A-Za-z0-9_.\-]+)=(?P<value>[^&;#\s\"'<>]*)"
)
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]{8,}")
# A JWT (header.payload.signature, base64url; the header always starts with '{"' = eyJ).
_JWT = re.compile(r"\beyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]*")
# scheme://user:password@host (a database URL in an exception message).
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-z][a-z0-9+.\-]*://[^:/@\s]+:)[^@\s/]+(?=@)", re.I)


def is_sensitive(name: str) -> bool:
    key = name.lower().replace("-", "_")
    return key in SENSITIVE_NAMES or key.endswith(SENSITIVE_SUFFIXES)


def redact_query(query: str) -> str:
    """``a=1&token=x`` -> ``a=1&token=REDACTED``; order, encoding and other values kept."""
    parts = []
    for part in query.split("&"):
        name, sep, value = part.partition("=")
        parts.append(f"{name}={REDACTED}" if sep and value and is_sensitive(name) else part)
    return "&".join(parts)


def redact_url(url: str) -> str:
    """A URL or path with its credential-carrying query parameters redacted."""
    head, sep, rest = url.partition("?")
    if not sep:
        return url
    query, hash_sep, fragment = rest.partition("#")
    return f"{head}?{redact_query(query)}{hash_sep}{fragment}"


def _param(match: re.Match[str]) -> str:
    if match["value"] and is_sensitive(match["name"]):
        return f"{match['lead']}{match['name']}={REDACTED}"
    return match[0]


def redact_text(text: str) -> str:
    """Free text (a log message, an exception) with credentials redacted: sensitive query
    parameters of any URL in it, ``Bearer``/``Basic`` credentials, bare JWTs and passwords
    in URLs."""
    if "=" in text:
        text = _PARAM.sub(_param, text)
    if "earer" in text or "asic" in text:
        text = _BEARER.sub(lambda m: f"{m[1]} {REDACTED}", text)
    if "eyJ" in text:
        text = _JWT.sub(REDACTED, text)
    if "://" in text:
        text = _URL_PASSWORD.sub(lambda m: m["head"] + REDACTED, text)
    return text


def redact_value(value: Any, depth: int = 0) -> Any:
    """A JSON-like value with secret-named keys masked and every string passed through
    ``redact_text`` (8 levels deep at most; deeper values are replaced)."""
    if depth > 8:
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {
            str(k): REDACTED if is_sensitive(str(k)) else redact_value(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_value(v, depth + 1) for v in value]
    return value
