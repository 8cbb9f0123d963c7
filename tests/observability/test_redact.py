"""Redaction: credentials out of query strings, headers-like keys, free text and URLs."""

from __future__ import annotations

import pytest

from observability.redact import REDACTED, redact_text, redact_value

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJlLXZhbHVl"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/ws/docs/1?token=abc&x=1", f"/ws/docs/1?token={REDACTED}&x=1"),
        ("GET /cb?code=xyz&state=s", f"GET /cb?code={REDACTED}&state=s"),
        ("?access_token=a&refresh_token=b", f"?access_token={REDACTED}&refresh_token={REDACTED}"),
        ("?api_key=k1&page=2", f"?api_key={REDACTED}&page=2"),
        ("Authorization: Bearer abcdefgh.ij", f"Authorization: Bearer {REDACTED}"),
        (f"bad token {JWT} here", f"bad token {REDACTED} here"),
        ("postgresql://app:s3cret@db:5432/x", f"postgresql://app:{REDACTED}@db:5432/x"),
        ("password=hunter2 rejected", f"password={REDACTED} rejected"),
        ("zipcode=12345 and page=3", "zipcode=12345 and page=3"),
        ("nothing to hide", "nothing to hide"),
    ],
)
def test_text(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_values_nested() -> None:
    value = {"Authorization": "Bearer x", "path": f"/a?token={JWT}", "user": "u1",
             "items": [{"client_secret": "s"}, "ok"], "count": 3}
    assert redact_value(value) == {
        "Authorization": REDACTED, "path": f"/a?token={REDACTED}", "user": "u1",
        "items": [{"client_secret": REDACTED}, "ok"], "count": 3,
    }
