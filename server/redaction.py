"""Credentials out of anything that is logged: query parameters, bearer headers, JWTs.

Sockets authenticate with ``?token=JWT`` (browsers cannot set headers on a WebSocket), so
every access-log line of a socket carried a working token. ``redact_url`` and
``redact_text`` are pure functions for any place that writes a URL or a message somewhere
(access and error logs, stored request logs); ``RedactingFilter`` applies ``redact_text``
to every record a logging handler emits, its arguments and its traceback included.
"""

from __future__ import annotations

import logging
import re
from typing import Any

REDACTED = "REDACTED"

# Query parameter names that carry a credential (compared lower-cased, '-' as '_').
SENSITIVE_NAMES = frozenset({
    "token", "access_token", "refresh_token", "id_token", "jwt", "code", "password",
    "passwd", "pass", "secret", "client_secret", "key", "api_key", "apikey", "signature",
    "sig", "auth", "authorization", "credential", "credentials", "session", "session_id",
    "sessionid", "otp", "ticket",
})
SENSITIVE_SUFFIXES = ("_token", "_key", "_secret", "_password", "_signature", "_credential")

# name=value inside a query string, wherever it appears in a text (the value ends at a
# separator, whitespace or a quote).
_PARAM = re.compile(r"(?P<lead>[?&;])(?P<name>[A-Za-z0-9_.\-]+)=(?P<value>[^&;#\s\"'<>]*)")
_BEARER = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=\-]{8,}")
# A JWT (header.payload.signature, base64url; the header always starts with '{"' = eyJ).
_JWT = re.compile(r"\beyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]*")


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
    parameters of any URL in it, ``Bearer``/``Basic`` credentials and bare JWTs."""
    if "=" in text:
        text = _PARAM.sub(_param, text)
    if "earer" in text or "asic" in text:
        text = _BEARER.sub(lambda m: f"{m[1]} {REDACTED}", text)
    if "eyJ" in text:
        text = _JWT.sub(REDACTED, text)
    return text


def _redact_arg(value: Any) -> Any:
    return redact_text(value) if isinstance(value, str) else value


class RedactingFilter(logging.Filter):
    """Redacts a record in place: its message, string arguments and traceback.

    Attach it to handlers (a handler's filters also see the records that propagate to it
    from child loggers; a logger's filters do not). Arguments stay arguments, so
    formatters that read them by position (uvicorn's access formatter) keep working.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact_text(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_arg(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: _redact_arg(arg) for key, arg in record.args.items()}
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True
