"""Credentials out of anything that is logged: query parameters, bearer headers, JWTs.

Sockets authenticate with ``?token=JWT`` (browsers cannot set headers on a WebSocket), so
every access-log line of a socket carried a working token. ``redact_url`` and
``redact_text`` (``observability.redact``, re-exported here) are pure functions for any
place that writes a URL or a message somewhere (access and error logs, error_logs rows,
Sentry events); ``RedactingFilter`` applies ``redact_text`` to every record a logging
handler emits, its arguments and its traceback included.
"""

from __future__ import annotations

import logging
from typing import Any

# One implementation: the error reporter and Sentry scrubbing use it too, and the
# observability package does not import ``server``.
from observability.redact import (
    REDACTED,
    SENSITIVE_NAMES,
    SENSITIVE_SUFFIXES,
    is_sensitive,
    redact_query,
    redact_text,
    redact_url,
)

__all__ = [
    "REDACTED", "SENSITIVE_NAMES", "SENSITIVE_SUFFIXES", "RedactingFilter", "is_sensitive",
    "redact_query", "redact_text", "redact_url",
]


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
