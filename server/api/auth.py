"""Sign-up, sign-in, refresh and sign-out: access JWTs plus rotating refresh tokens."""

from __future__ import annotations

import time
import uuid
from typing import Any

import asyncpg
from pydantic import BaseModel, ConfigDict, Field

from persistence import accounts
from server.api.routing import Ctx, Endpoint
from server.auth import rate_limit
from server.auth.passwords import hash_password, needs_rehash, verify_password
from server.auth.refresh import hash_refresh_token, new_refresh_token
from server.auth.sessions import client_info
from server.auth.tokens import issue_access_token
from server.errors import ApiError

EMAIL_PATTERN = r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$"


class SignUp(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(max_length=254, pattern=EMAIL_PATTERN)
    password: str = Field(min_length=8, max_length=256)
    full_name: str | None = Field(None, max_length=200)


class SignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    email: str = Field(max_length=254)
    password: str = Field(max_length=256)


class RefreshRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    refresh_token: str = Field(min_length=1, max_length=256)


class SignOut(BaseModel):
    model_config = ConfigDict(extra="forbid")
    refresh_token: str | None = Field(None, max_length=256)


class TokenUser(BaseModel):
    id: uuid.UUID
    email: str


class Tokens(BaseModel):
    access_token: str
    token_type: str
    expires_in: int
    expires_at: int
    refresh_token: str
    session_id: uuid.UUID
    user: TokenUser


def invalid_credentials() -> ApiError:
    return ApiError(401, "invalid_credentials", "invalid email or password")


def invalid_refresh(code: str = "invalid_refresh_token") -> ApiError:
    return ApiError(401, code, "refresh token is invalid, expired or revoked")


def normalise_email(email: str) -> str:
    return email.strip().lower()


async def start_session(
    ctx: Ctx, conn: asyncpg.Connection, user_id: uuid.UUID
) -> tuple[uuid.UUID, str]:
    info = client_info(ctx.request)
    session_id = await accounts.create_session(
        conn, user_id, info.ip_address, info.user_agent, info.device_type, info.browser, info.os
    )
    refresh = new_refresh_token()
    await accounts.insert_refresh_token(
        conn,
        hash_refresh_token(refresh),
        user_id,
        session_id,
        None,
        ctx.services.settings.refresh_token_ttl_s,
    )
    return session_id, refresh


def token_answer(
    ctx: Ctx,
    user_id: uuid.UUID,
    email: str,
    session_id: uuid.UUID,
    refresh: str,
    user_metadata: dict[str, Any] | None,
) -> dict[str, Any]:
    settings = ctx.services.settings
    now = int(time.time())
    access = issue_access_token(
        settings.jwt_secret,
        str(user_id),
        email,
        audience=settings.jwt_audience,
        ttl_s=settings.access_token_ttl_s,
        session_id=str(session_id),
        user_metadata=user_metadata,
        now=now,
    )
    return {
        "access_token": access,
        "token_type": "bearer",
        "expires_in": settings.access_token_ttl_s,
        "expires_at": now + settings.access_token_ttl_s,
        "refresh_token": refresh,
        "session_id": session_id,
        "user": {"id": user_id, "email": email},
    }


async def sign_up(ctx: Ctx) -> dict[str, Any]:
    body: SignUp = ctx.body
    email = normalise_email(body.email)
    await rate_limit.admit_sign_up(ctx.db, email, client_info(ctx.request).ip_address)
    password_hash = await hash_password(body.password)
    meta = {"full_name": body.full_name} if body.full_name else {}
    try:
        async with ctx.db.service() as conn:
            user_id = await accounts.create_auth_user(conn, email, password_hash, meta)
            session_id, refresh = await start_session(ctx, conn, user_id)
    except asyncpg.UniqueViolationError:
        raise ApiError(409, "email_taken", "an account with this email already exists") from None
    return token_answer(ctx, user_id, email, session_id, refresh, meta)


async def sign_in(ctx: Ctx) -> dict[str, Any]:
    body: SignIn = ctx.body
    email = normalise_email(body.email)
    ip = client_info(ctx.request).ip_address
    await rate_limit.check_sign_in_allowed(ctx.db, email, ip)
    async with ctx.db.acquire() as conn:
        found = await accounts.credentials(conn, email)
    # Unknown emails are verified against a dummy hash: same answer, same time.
    ok = await verify_password(found["encrypted_password"] if found else None, body.password)
    await rate_limit.record_sign_in(ctx.db, email, ip, ok)
    if not ok or found is None:
        raise invalid_credentials()
    stored = found["encrypted_password"]
    new_hash = await hash_password(body.password) if needs_rehash(stored) else None
    async with ctx.db.service() as conn:
        await accounts.mark_signed_in(conn, found["id"], new_hash)
        session_id, refresh = await start_session(ctx, conn, found["id"])
    return token_answer(
        ctx, found["id"], found["email"], session_id, refresh, found["raw_user_meta_data"]
    )


async def refresh(ctx: Ctx) -> dict[str, Any]:
    body: RefreshRequest = ctx.body
    reused = False
    async with ctx.db.service() as conn:
        row = await accounts.lock_refresh_token(conn, hash_refresh_token(body.refresh_token))
        if row is None or row["revoked_at"] or row["session_revoked_at"] or row["expired"]:
            raise invalid_refresh()
        if row["rotated_at"] is not None:
            # A rotated token came back: someone holds a copy. End the whole family.
            await accounts.revoke_session(conn, row["session_id"], row["user_id"])
            reused = True
        else:
            await accounts.mark_rotated(conn, row["id"])
            token = new_refresh_token()
            await accounts.insert_refresh_token(
                conn,
                hash_refresh_token(token),
                row["user_id"],
                row["session_id"],
                row["id"],
                ctx.services.settings.refresh_token_ttl_s,
            )
            await accounts.touch_session(conn, row["session_id"])
    if reused:
        raise invalid_refresh("refresh_token_reused")
    return token_answer(
        ctx, row["user_id"], row["email"], row["session_id"], token, row["raw_user_meta_data"]
    )


async def sign_out(ctx: Ctx) -> None:
    body: SignOut = ctx.body
    assert ctx.principal is not None
    session_ids: list[uuid.UUID] = []
    claimed = ctx.principal.claims.get("session_id")
    if isinstance(claimed, str):
        try:
            session_ids.append(uuid.UUID(claimed))
        except ValueError:
            pass
    async with ctx.db.service() as conn:
        if body.refresh_token:
            row = await accounts.lock_refresh_token(conn, hash_refresh_token(body.refresh_token))
            if row is not None and str(row["user_id"]) == ctx.user_id:
                session_ids.append(row["session_id"])
        for session_id in session_ids:
            await accounts.revoke_session(conn, session_id, ctx.user_uuid)


ENDPOINTS = [
    Endpoint("POST", "/auth/signup", sign_up, "Create an account and sign in", "auth",
             body=SignUp, response=Tokens, status=201, auth=False, errors=(409,)),
    Endpoint("POST", "/auth/signin", sign_in, "Sign in with email and password", "auth",
             body=SignIn, response=Tokens, auth=False, errors=(401, 429)),
    Endpoint("POST", "/auth/refresh", refresh, "Exchange a refresh token (rotates it)", "auth",
             body=RefreshRequest, response=Tokens, auth=False, errors=(401,)),
    Endpoint("POST", "/auth/signout", sign_out, "Revoke the current session", "auth",
             body=SignOut, body_required=False, status=204),
]
