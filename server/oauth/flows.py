"""The authorization-code flow: start (PKCE, state, nonce), callback, one-time sign-in grant.

Binding to the browser: ``start`` sets (or reuses) a random secret in an HttpOnly cookie and
stores its hash with the flow; the callback is accepted only with that cookie, only once,
and only within ``flow_ttl_s``. The state itself is 256 random bits, stored hashed: a
forged or guessed state finds no flow, so it needs no signature. A sign-in ends with a
one-time grant code in the page's URL fragment (never sent to a server, never a token),
which the same browser exchanges for our tokens within ``grant_ttl_s``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass

import asyncpg

from persistence import oauth as store
from persistence.crypto import DecryptionError
from server.oauth.errors import OAuthError
from server.oauth.linking import resolve_user
from server.oauth.service import OAuthService, token_set

BROWSER_COOKIE = "icreate_oauth"
PURPOSES = ("sign_in", "connect")
_SECRET = re.compile(r"^[A-Za-z0-9_-]{32,128}$")


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def valid_secret(value: str | None) -> bool:
    return value is not None and _SECRET.match(value) is not None


@dataclass(frozen=True)
class Started:
    authorization_url: str
    browser_secret: str


@dataclass(frozen=True)
class Finished:
    purpose: str
    provider: str
    user_id: uuid.UUID
    created: bool
    # Sign-in only: what the page exchanges for tokens (POST /auth/oauth/exchange).
    grant: str | None
    return_to: str | None


async def start(
    svc: OAuthService,
    *,
    provider_name: str,
    purpose: str,
    user_id: uuid.UUID | None,
    redirect_uri: str,
    browser_secret: str | None,
    return_to: str | None = None,
) -> Started:
    provider = svc.provider(provider_name)
    if purpose not in PURPOSES:
        raise OAuthError("bad_request", f"purpose must be one of {', '.join(PURPOSES)}")
    if purpose == "connect" and user_id is None:
        raise OAuthError("unauthorized", "sign in to connect an account", 401)
    browser = browser_secret if valid_secret(browser_secret) else secrets.token_urlsafe(32)
    assert browser is not None
    state = secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(64)  # 86 characters (RFC 7636: 43 to 128)
    nonce = secrets.token_urlsafe(24) if provider.uses_nonce else None
    endpoints = await provider.endpoints(svc.http)
    async with svc.client(provider, redirect_uri) as client:
        url, _ = client.create_authorization_url(
            endpoints.authorize, state=state, code_verifier=verifier,
            scope=" ".join(provider.scopes(purpose)) or None, nonce=nonce,
            **provider.authorize_params(purpose),
        )
    async with svc.db.service() as conn:
        await store.prune_flows(conn)
        await store.insert_flow(
            conn, svc.keyring, state_hash=digest(state), browser_hash=digest(browser),
            provider=provider.name, purpose=purpose, user_id=user_id, code_verifier=verifier,
            nonce=nonce, redirect_uri=redirect_uri, return_to=return_to,
            ttl_s=svc.config.flow_ttl_s,
        )
    return Started(str(url), browser)


async def finish(
    svc: OAuthService,
    *,
    provider_name: str,
    params: Mapping[str, str],
    browser_secret: str | None,
) -> Finished:
    """The callback: check and spend the state, exchange the code, find or make the user."""
    provider = svc.provider(provider_name)
    state = params.get("state")
    if not state:
        raise OAuthError("invalid_state", "the provider's answer carries no state")
    async with svc.db.service() as conn:
        flow = await store.lock_flow(conn, digest(state))
        if flow is None or flow["provider"] != provider.name:
            raise OAuthError("invalid_state", "unknown sign-in state")
        if flow["consumed_at"] is not None:
            raise OAuthError("state_reused", "this sign-in answer was already used")
        if flow["expired"]:
            raise OAuthError("state_expired", "this sign-in took too long: start again")
        if not valid_secret(browser_secret) or not hmac.compare_digest(
            flow["browser_hash"], digest(browser_secret or "")
        ):
            # Not spent: the browser that started it may still come back with it.
            raise OAuthError("state_mismatch", "this sign-in was started in another browser")
        await store.consume_flow(conn, flow["id"])
    error = params.get("error")
    if error:
        reason = "access_denied" if error == "access_denied" else "provider_error"
        raise OAuthError(reason, params.get("error_description") or error, 403)
    code = params.get("code")
    if not code:
        raise OAuthError("bad_request", "the provider's answer carries no code")
    try:
        verifier = svc.keyring.decrypt(flow["code_verifier"], store.flow_context(flow["id"]))
    except DecryptionError as exc:
        raise OAuthError("invalid_state", "this sign-in cannot be completed: start again") from exc
    token = await svc.exchange_code(provider, code, verifier, flow["redirect_uri"])
    identity = await provider.identity(svc.http, token, flow["nonce"])
    tokens = token_set(token)
    grant: str | None = None
    async with svc.db.service() as conn:
        user_id, created = await resolve_user(
            conn, identity, flow["purpose"], flow["user_id"], provider.display_name
        )
        try:
            async with conn.transaction():
                await store.save_connection(
                    conn, svc.keyring, user_id=user_id, provider=provider.name,
                    provider_user_id=identity.provider_user_id, tokens=tokens,
                    metadata=identity.metadata(),
                )
        except asyncpg.UniqueViolationError:
            raise OAuthError(
                "identity_taken",
                f"this {provider.display_name} account is connected to another user", 409,
            ) from None
        if flow["purpose"] == "sign_in":
            grant = secrets.token_urlsafe(32)
            await store.set_grant(conn, flow["id"], digest(grant), user_id,
                                  svc.config.grant_ttl_s)
    return Finished(flow["purpose"], provider.name, user_id, created, grant, flow["return_to"])


async def redeem(svc: OAuthService, grant: str, browser_secret: str | None) -> uuid.UUID:
    """The user a sign-in grant stands for; it works once, in the browser that started."""
    if not valid_secret(grant) or not valid_secret(browser_secret):
        raise OAuthError("invalid_grant_code", "unknown sign-in code")
    async with svc.db.service() as conn:
        user_id = await store.use_grant(conn, digest(grant), digest(browser_secret or ""))
    if user_id is None:
        raise OAuthError(
            "invalid_grant_code", "this sign-in code is unknown, used, expired or from another "
            "browser",
        )
    return user_id
