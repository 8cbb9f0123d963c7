"""Supabase-compatible access tokens (HS256; sub, email, role, aud, exp, iat)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import jwt

ALGORITHM = "HS256"


class TokenError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Principal:
    """Who a verified token says the caller is."""

    user_id: str
    email: str | None
    role: str
    claims: dict[str, Any]


def issue_access_token(
    secret: str,
    user_id: str,
    email: str | None,
    *,
    audience: str = "authenticated",
    ttl_s: int = 3600,
    session_id: str | None = None,
    user_metadata: dict[str, Any] | None = None,
    now: float | None = None,
) -> str:
    issued = int(now if now is not None else time.time())
    claims: dict[str, Any] = {
        "sub": user_id,
        "email": email,
        "role": "authenticated",
        "aud": audience,
        "iat": issued,
        "exp": issued + ttl_s,
        "jti": uuid.uuid4().hex,
        # As in Supabase's tokens: what the user gave at sign-up (full_name), so sockets
        # can show a display name without a query.
        "user_metadata": user_metadata or {},
    }
    if session_id:
        claims["session_id"] = session_id
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def verify_access_token(secret: str, token: str, *, audience: str = "authenticated") -> Principal:
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            audience=audience,
            options={"require": ["sub", "exp"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenError("token_expired", "access token expired") from exc
    except jwt.InvalidTokenError as exc:
        raise TokenError("invalid_token", "access token invalid") from exc
    sub = claims.get("sub")
    try:
        uuid.UUID(str(sub))
    except ValueError as exc:
        raise TokenError("invalid_token", "token subject is not a user id") from exc
    return Principal(str(sub), claims.get("email"), str(claims.get("role", "")), claims)
