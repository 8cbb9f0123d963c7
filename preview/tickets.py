"""Getting a signed-in member into a private preview without handing it an IDE token.

The IDE asks the API for a ticket (a JWT good for one minute, for one preview) and opens
``<preview url>/__icreate/session?ticket=...``; the preview origin trades it for a session
cookie that lives on that preview's host only (HttpOnly: the app's scripts cannot read it,
and the proxy removes it before a request reaches the app). Tickets and sessions are
signed with a key derived from the JWT secret, with their own audiences: an IDE access
token is not a preview session, and a preview session is not an access token.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass

import jwt

TICKET_AUDIENCE = "icreate-preview-ticket"
SESSION_AUDIENCE = "icreate-preview-session"
TICKET_TTL_S = 60
SESSION_TTL_S = 12 * 3600
ALGORITHM = "HS256"


class TicketError(Exception):
    pass


@dataclass(frozen=True)
class PreviewGrant:
    user_id: uuid.UUID
    project_id: uuid.UUID
    environment: str


def preview_key(jwt_secret: str) -> bytes:
    return hmac.new(jwt_secret.encode(), b"icreate-preview-v1", hashlib.sha256).digest()


def issue(key: bytes, grant: PreviewGrant, *, audience: str, ttl_s: int) -> str:
    now = int(time.time())
    return jwt.encode(
        {"sub": str(grant.user_id), "project": str(grant.project_id),
         "env": grant.environment, "aud": audience, "iat": now, "exp": now + ttl_s},
        key, algorithm=ALGORITHM,
    )


def verify(key: bytes, token: str, *, audience: str) -> PreviewGrant:
    try:
        claims = jwt.decode(token, key, algorithms=[ALGORITHM], audience=audience,
                            options={"require": ["exp", "sub", "aud"]})
        return PreviewGrant(uuid.UUID(claims["sub"]), uuid.UUID(claims["project"]),
                            str(claims["env"]))
    except (jwt.PyJWTError, KeyError, ValueError, TypeError) as exc:
        raise TicketError(str(exc)) from None
