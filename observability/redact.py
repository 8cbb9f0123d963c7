"""Credential redaction for whatever we store or send about a request or an error.

The single place that decides what looks like a secret: credential query parameters
(``?token=eyJ…``), ``Authorization``-style mapping keys, bearer tokens and JWTs in free text,
and passwords in URLs (``postgresql://user:secret@host``). Used for ``error_logs`` rows and
Sentry events; ``api_logs`` stores no query string, header or body at all.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

REDACTED = "[redacted]"

# Parameter and key names whose values are credentials (matched as substrings, lower case).
SECRET_NAMES = (
    "token", "password", "passwd", "secret", "authorization", "api_key", "apikey",
    "api-key", "cookie", "credential", "signature", "session_id", "dsn", "private_key",
)
_SECRET_NAME = re.compile("|".join(re.escape(n) for n in SECRET_NAMES), re.IGNORECASE)

# name=value inside a query string or free text, for the names above (and OAuth's `code`).
_QUERY_PAIR = re.compile(
    r"(?<![\w.-])(?P<name>[\w.-]*(?:" + "|".join(re.escape(n) for n in SECRET_NAMES)
    + r")[\w.-]*|code|key|sig)=(?P<value>[^&\s'\"#]+)",
    re.IGNORECASE,
)
_BEARER = re.compile(r"(?P<scheme>\b(?:bearer|basic)\s+)[\w.~+/=-]+", re.IGNORECASE)
_JWT = re.compile(r"\beyJ[\w-]{5,}\.[\w-]{5,}\.[\w-]+")
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-z][a-z0-9+.-]*://[^:/@\s]+:)[^@\s/]+(?=@)", re.I)


def is_secret_name(name: str) -> bool:
    return _SECRET_NAME.search(name) is not None


def redact_text(text: str) -> str:
    """``text`` with credential values replaced: query pairs, bearer tokens, JWTs, URL passwords."""
    text = _QUERY_PAIR.sub(lambda m: f"{m.group('name')}={REDACTED}", text)
    text = _BEARER.sub(lambda m: m.group("scheme") + REDACTED, text)
    text = _JWT.sub(REDACTED, text)
    return _URL_PASSWORD.sub(lambda m: m.group("head") + REDACTED, text)


def redact_value(value: Any, depth: int = 0) -> Any:
    """A JSON-like value with secret-named keys masked and every string passed through
    ``redact_text`` (nested up to 8 levels; deeper values are dropped)."""
    if depth > 8:
        return REDACTED
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {
            str(k): REDACTED if is_secret_name(str(k)) else redact_value(v, depth + 1)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact_value(v, depth + 1) for v in value]
    return value
