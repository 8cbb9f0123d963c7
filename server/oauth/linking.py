"""Which user a provider identity signs in as, or is connected to.

The rules (an account-takeover path when wrong, DESIGN.md section 8):
- a provider account already connected signs in as its user;
- an explicit connect attaches the identity to the signed-in user, unless another user
  holds it;
- otherwise a sign-in links to an existing account only through an email address that
  the provider says is verified and that this account has confirmed; an unverified email
  never links (and creates no account: the address would be squatted). A password
  sign-up leaves the email unconfirmed (nothing proved the address is the signer's, so
  whoever signed up with someone else's address cannot wait for them to sign in with
  Google); it becomes confirmed when its signed-in owner connects a provider that
  verified the same address, or when the account was made by a provider's sign-in;
- no account with that email: a new one, without a password.
"""

from __future__ import annotations

import uuid

import asyncpg

from persistence import accounts
from persistence import oauth as store
from server.oauth.errors import OAuthError
from server.oauth.providers import Identity


def _disabled() -> OAuthError:
    return OAuthError("account_disabled", "this account is disabled", 403)


async def _active(conn: asyncpg.Connection, user_id: uuid.UUID) -> uuid.UUID:
    row = await accounts.account(conn, user_id)
    if row is None or not row["active"]:
        raise _disabled()
    return user_id


async def resolve_user(
    conn: asyncpg.Connection,
    identity: Identity,
    purpose: str,
    current_user: uuid.UUID | None,
    display_name: str,
) -> tuple[uuid.UUID, bool]:
    """(user id, whether the account was created now)."""
    linked = await store.by_identity(conn, identity.provider, identity.provider_user_id)
    if purpose == "connect":
        assert current_user is not None
        if linked is not None and linked["user_id"] != current_user:
            raise OAuthError(
                "identity_taken", f"this {display_name} account is connected to another user", 409
            )
        user_id = await _active(conn, current_user)
        if identity.email and identity.email_verified:
            await accounts.confirm_email(conn, user_id, identity.email)
        return user_id, False
    if linked is not None:
        return await _active(conn, linked["user_id"]), False
    if not identity.email:
        raise OAuthError(
            "email_required", f"{display_name} shared no email address for this account"
        )
    if not identity.email_verified:
        raise OAuthError(
            "email_unverified",
            f"{display_name} has not verified {identity.email}: verify it there first, or sign "
            f"in with your password and connect {display_name} in your settings",
            403,
        )
    existing = await accounts.account_by_email(conn, identity.email)
    if existing is not None:
        if not existing["active"]:
            raise _disabled()
        if existing["email_confirmed_at"] is None:
            raise OAuthError(
                "email_unconfirmed",
                "this account's email is not confirmed here: sign in with your password and "
                f"connect {display_name} in your settings",
                409,
            )
        other = await store.for_user(conn, existing["id"], identity.provider)
        if other is not None and other["provider_user_id"] != identity.provider_user_id:
            raise OAuthError(
                "identity_conflict",
                f"another {display_name} account is connected to this user",
                409,
            )
        return existing["id"], False
    meta = {k: v for k, v in (("full_name", identity.name), ("avatar_url", identity.avatar_url))
            if v}
    app_meta = {"provider": identity.provider, "providers": [identity.provider]}
    try:
        async with conn.transaction():  # a savepoint: a concurrent sign-up may win the email
            return await accounts.create_oauth_user(conn, identity.email, meta, app_meta), True
    except asyncpg.UniqueViolationError:
        raise OAuthError(
            "email_taken", "an account with this email was created meanwhile: try again", 409
        ) from None
