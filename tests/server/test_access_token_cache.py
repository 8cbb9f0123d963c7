"""Verified access tokens are remembered (server/auth/tokens.py) without changing what
verification answers: a remembered token still expires, another secret or audience is
verified afresh, and a bad token is never remembered."""

from __future__ import annotations

import time
import uuid

import pytest

from server.auth import tokens
from server.auth.tokens import TokenError, issue_access_token, verify_access_token

SECRET = "token-cache-secret-0123456789-0123456789"


def test_a_remembered_token_still_expires() -> None:
    user = str(uuid.uuid4())
    token = issue_access_token(SECRET, user, "a@example.test", ttl_s=1)
    first = verify_access_token(SECRET, token)
    assert first.user_id == user
    assert verify_access_token(SECRET, token) is first  # remembered
    time.sleep(max(0.0, float(first.claims["exp"]) - time.time()) + 0.05)
    with pytest.raises(TokenError) as expired:
        verify_access_token(SECRET, token)
    assert expired.value.code == "token_expired"
    with pytest.raises(TokenError) as again:
        verify_access_token(SECRET, token)
    assert again.value.code == "token_expired"


def test_other_secret_or_audience_and_bad_tokens_are_checked_each_time() -> None:
    token = issue_access_token(SECRET, str(uuid.uuid4()), None)
    verify_access_token(SECRET, token)
    with pytest.raises(TokenError) as wrong_secret:
        verify_access_token(SECRET + "x", token)
    assert wrong_secret.value.code == "invalid_token"
    with pytest.raises(TokenError):
        verify_access_token(SECRET, token, audience="service")
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    for _ in range(2):
        with pytest.raises(TokenError):
            verify_access_token(SECRET, tampered)


def test_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tokens, "VERIFIED_CACHE_SIZE", 3)
    tokens._verified.clear()
    for _ in range(7):
        verify_access_token(SECRET, issue_access_token(SECRET, str(uuid.uuid4()), None))
        assert len(tokens._verified) <= 3
