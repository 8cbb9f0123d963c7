"""Redaction as pure functions (tables of input and expected text) and as a log filter."""

from __future__ import annotations

import logging

import pytest
from uvicorn.logging import AccessFormatter

from server.redaction import RedactingFilter, redact_query, redact_text, redact_url

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.sig-NATURE_x"


@pytest.mark.parametrize(("url", "expected"), [
    ("/ws/docs/f1?token=abc", "/ws/docs/f1?token=REDACTED"),
    ("/a?limit=5&access_token=x&cursor=c", "/a?limit=5&access_token=REDACTED&cursor=c"),
    ("/cb?code=xyz&state=s1", "/cb?code=REDACTED&state=s1"),
    ("/x?Refresh-Token=1&X-Amz-Signature=2&api_key=3&client_secret=4&password=5",
     "/x?Refresh-Token=REDACTED&X-Amz-Signature=REDACTED&api_key=REDACTED"
     "&client_secret=REDACTED&password=REDACTED"),
    ("/x?token=&flag&path=a%20b", "/x?token=&flag&path=a%20b"),
    ("/plain/path", "/plain/path"),
    ("https://h/p?key=k#frag", "https://h/p?key=REDACTED#frag"),
])
def test_redact_url(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_redact_query_keeps_order_and_encoding() -> None:
    assert redact_query("b=%2F&sig=s&a=1") == "b=%2F&sig=REDACTED&a=1"


@pytest.mark.parametrize(("text", "expected"), [
    ('127.0.0.1:5 - "WebSocket /ws/p/1?token=abc.def" [accepted]',
     '127.0.0.1:5 - "WebSocket /ws/p/1?token=REDACTED" [accepted]'),
    ("GET http://h/x?a=1&secret=s3 failed", "GET http://h/x?a=1&secret=REDACTED failed"),
    ("Authorization: Bearer abcdefgh12345", "Authorization: Bearer REDACTED"),
    (f"bad token {JWT} here", "bad token REDACTED here"),
    ("nothing to see ?limit=5", "nothing to see ?limit=5"),
])
def test_redact_text(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def _record(
    msg: str, args: tuple[object, ...], exc: BaseException | None = None
) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord("uvicorn.access", logging.INFO, __file__, 1, msg, args, exc_info)


def test_filter_redacts_uvicorn_access_lines_and_keeps_their_arguments() -> None:
    record = _record('%s - "%s %s HTTP/%s" %d',
                     ("127.0.0.1:1", "GET", f"/ws/docs/1?token={JWT}", "1.1", 200))
    assert RedactingFilter().filter(record)
    line = AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s').format(record)
    assert line == '127.0.0.1:1 - "GET /ws/docs/1?token=REDACTED HTTP/1.1" 200 OK'


def test_filter_redacts_tracebacks() -> None:
    try:
        raise RuntimeError(f"request to http://h/v1?api_key=sk-123 with Bearer {JWT} failed")
    except RuntimeError as exc:
        record = _record("provider failed", (), exc)
    RedactingFilter().filter(record)
    text = logging.Formatter().format(record)
    assert "api_key=REDACTED" in text and "Bearer REDACTED" in text
    assert "sk-123" not in text and "eyJ" not in text
