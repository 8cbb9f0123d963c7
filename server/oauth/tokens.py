"""Stored provider tokens: a valid access token on demand, refresh ahead of expiry, revoke.

For the git work (clone, push, listing repositories)::

    token = await access_token(services.oauth, user_id, "github")
    # git over HTTPS: user name token.git_username, password token.access_token
    # REST: Authorization: Bearer {token.access_token}

It refreshes the token first when it expires within ``refresh_margin_s`` (under a row lock,
so two processes never spend the same refresh token twice: GitLab rotates them), raises
``NotConnected`` when the user has no connection to that provider and
``ReconnectRequired`` when the provider refused the refresh (revoked, expired): the user
must connect again. Tokens never leave the server through the API.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from persistence import oauth as store
from persistence.crypto import DecryptionError
from persistence.oauth import TokenSet
from server.oauth.errors import NotConnected, OAuthError, ProviderError, ReconnectRequired
from server.oauth.service import OAuthService, token_set

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProviderToken:
    provider: str
    access_token: str
    expires_at: datetime | None
    scopes: tuple[str, ...]
    # git over HTTPS with this token: user name (password = the token).
    git_username: str
    provider_user_id: str


def _decrypt(svc: OAuthService, row: asyncpg.Record) -> TokenSet:
    try:
        access = svc.keyring.decrypt(
            row["access_token"], store.token_context(row["id"], "access_token")
        )
        refresh = (
            svc.keyring.decrypt(
                row["refresh_token"], store.token_context(row["id"], "refresh_token")
            ) if row["refresh_token"] else None
        )
    except DecryptionError as exc:
        log.error("oauth connection %s does not decrypt: %s", row["id"], exc)
        raise ReconnectRequired(row["provider"]) from exc
    return TokenSet(access, refresh, row["token_expires_at"], list(row["scopes"] or []))


def _due(row: asyncpg.Record, margin_s: float) -> bool:
    expires: datetime | None = row["token_expires_at"]
    return expires is not None and expires <= datetime.now(UTC) + timedelta(seconds=margin_s)


def _answer(svc: OAuthService, row: asyncpg.Record, tokens: TokenSet) -> ProviderToken:
    provider = svc.providers.get(row["provider"])
    return ProviderToken(
        row["provider"], tokens.access_token, tokens.expires_at, tuple(tokens.scopes or ()),
        provider.git_username if provider else "oauth2", row["provider_user_id"],
    )


async def access_token(
    svc: OAuthService, user_id: uuid.UUID, provider: str, *, margin_s: float | None = None
) -> ProviderToken:
    """A valid (refreshed if needed) access token of the user's ``provider`` connection."""
    margin = svc.config.refresh_margin_s if margin_s is None else margin_s
    async with svc.db.acquire() as conn:
        row = await store.for_user(conn, user_id, provider)
    if row is None:
        raise NotConnected(provider)
    if (row["metadata"] or {}).get("status") == "reauth_required":
        raise ReconnectRequired(provider)
    if not _due(row, margin):
        return _answer(svc, row, _decrypt(svc, row))
    refused = False
    async with svc.db.service() as conn:
        row = await store.for_user(conn, user_id, provider, lock=True)
        if row is None:
            raise NotConnected(provider)
        current = _decrypt(svc, row)
        if not _due(row, margin):  # another process refreshed it meanwhile
            return _answer(svc, row, current)
        fresh: TokenSet | None = None
        if current.refresh_token is not None and provider in svc.providers:
            try:
                answer = await svc.refresh(svc.providers[provider], current.refresh_token)
                fresh = token_set(answer, previous_refresh=current.refresh_token)
            except ProviderError as exc:
                log.info("refreshing %s token of %s refused: %s", provider, user_id,
                         exc.provider_code)
                refused = True
        if fresh is None:
            expired = row["token_expires_at"] <= datetime.now(UTC)
            if not (refused or expired):
                return _answer(svc, row, current)  # still valid, merely close to expiry
            await store.mark_reauth_required(conn, row["id"])
        else:
            await store.update_tokens(conn, svc.keyring, row["id"], fresh)
            return _answer(svc, row, fresh)
    raise ReconnectRequired(provider)


async def refresh_expiring(svc: OAuthService, within_s: float = 900, limit: int = 200) -> int:
    """Refresh every token expiring within ``within_s``; the recurring job. Idempotent:
    a token refreshed meanwhile is skipped under its row lock. Returns how many were due."""
    async with svc.db.acquire() as conn:
        due = await store.due_for_refresh(conn, within_s, limit)
    for user_id, provider in due:
        try:
            await access_token(svc, user_id, provider, margin_s=within_s)
        except OAuthError as exc:
            log.info("token refresh of %s for %s: %s", provider, user_id, exc.code)
    return len(due)


async def list_connections(svc: OAuthService, user_id: uuid.UUID) -> list[dict[str, Any]]:
    """The user's connections as the API shows them (no token, ever)."""
    async with svc.db.as_user(str(user_id)) as conn:
        rows = await store.list_connections(conn, user_id)
    result = []
    for row in rows:
        meta = row["metadata"] or {}
        result.append({
            "provider": row["provider"],
            "provider_user_id": row["provider_user_id"],
            "username": meta.get("username"),
            "email": meta.get("email"),
            "scopes": row["scopes"] or [],
            "token_expires_at": row["token_expires_at"],
            "status": meta.get("status") or "active",
            "connected_at": row["created_at"],
            "updated_at": row["updated_at"],
        })
    return result


async def disconnect(svc: OAuthService, user_id: uuid.UUID, provider: str) -> bool | None:
    """Forget the connection and revoke it at the provider where it can be revoked.

    Returns True (revoked), False (the provider refused or was unreachable: forgotten here
    all the same) or None (the provider has no revocation).
    """
    async with svc.db.as_user(str(user_id)) as conn:
        row = await store.delete_connection(conn, user_id, provider)
    if row is None:
        raise NotConnected(provider)
    handler = svc.providers.get(provider)
    if handler is None:
        return None
    try:
        tokens = _decrypt(svc, row)
    except ReconnectRequired:
        return False
    revoked = await handler.revoke(svc.http, tokens)
    if revoked is False:
        log.warning("revoking the %s grant of %s failed", provider, user_id)
    return revoked
