"""Accounts: sign-up/in, token expiry and tampering, refresh rotation and reuse, sessions."""

from __future__ import annotations

import base64
import json
import statistics
import time

import jwt

from persistence.db import Database
from server.auth.tokens import issue_access_token
from tests.api.client import PASSWORD, Api, as_user
from tests.conftest import TEST_JWT_SECRET

CHROME_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
)
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.0 Mobile/15E148 Safari/604.1"
)


async def test_access_token_has_supabase_claims_and_works_with_rls(
    api: Api, db: Database
) -> None:
    user = await api.sign_up("Claims@Example.test")
    claims = jwt.decode(user.token, TEST_JWT_SECRET, algorithms=["HS256"], audience="authenticated")
    assert claims["sub"] == user.id and claims["email"] == "claims@example.test"
    assert claims["role"] == "authenticated" and claims["aud"] == "authenticated"
    assert claims["exp"] > claims["iat"]
    async with db.as_user(user.id) as conn:
        assert str(await conn.fetchval("select auth.uid()")) == user.id
        assert await conn.fetchval("select count(*) from public.users") == 1


async def test_duplicate_sign_up_is_409_and_bad_input_is_422(api: Api) -> None:
    await api.sign_up("dup@example.test")
    again = await api.call(
        "POST", "/auth/signup", {"email": "DUP@example.test", "password": PASSWORD}
    )
    assert again.status == 409 and again.error_code == "email_taken"
    short = await api.call("POST", "/auth/signup", {"email": "a@b.test", "password": "short"})
    assert short.status == 422 and short.error_code == "validation_error"
    bad = await api.call("POST", "/auth/signup", {"email": "not-an-email", "password": PASSWORD})
    assert bad.status == 422


async def test_sign_in_errors_do_not_reveal_whether_the_email_exists(api: Api) -> None:
    user = await api.sign_up()
    wrong_times: list[float] = []
    unknown_times: list[float] = []
    wrong = unknown = None
    for i in range(4):
        started = time.perf_counter()
        wrong = await api.sign_in(user.email, "wrong password")
        wrong_times.append(time.perf_counter() - started)
        started = time.perf_counter()
        unknown = await api.sign_in(f"nobody-{i}@example.test", "wrong password")
        unknown_times.append(time.perf_counter() - started)
    assert wrong is not None and unknown is not None
    assert wrong.status == unknown.status == 401
    assert wrong.body == unknown.body
    assert wrong.error_code == "invalid_credentials"
    # Unknown emails are checked against a dummy argon2 hash: same order of time.
    ratio = statistics.median(unknown_times) / statistics.median(wrong_times)
    assert 0.33 < ratio < 3, (wrong_times, unknown_times)
    ok = await api.sign_in(user.email)
    assert ok.status == 200


async def test_an_address_is_throttled_on_an_account_after_failures_even_with_the_password(
    api: Api,
) -> None:
    user = await api.sign_up()
    for _ in range(5):
        assert (await api.sign_in(user.email, "guess")).status == 401
    locked = await api.sign_in(user.email)
    assert locked.status == 429 and locked.error_code == "too_many_attempts"
    assert 0 < int(locked.headers["Retry-After"]) <= 15 * 60
    # Other accounts from the same ip are not locked by one account's failures.
    other = await api.sign_up()
    assert (await api.sign_in(other.email)).status == 200


async def test_ip_is_limited_across_accounts_using_the_shared_table(
    api: Api, db: Database
) -> None:
    async with db.service() as conn:
        await conn.executemany(
            "insert into public.auth_attempts (email, ip_address, succeeded)"
            " values ($1, '127.0.0.1', false)",
            [(f"spray-{i}@example.test",) for i in range(50)],
        )
    user = await api.sign_up()
    reply = await api.sign_in(user.email)
    assert reply.status == 429 and "Retry-After" in reply.headers


async def test_expired_and_tampered_tokens_are_401(api: Api) -> None:
    user = await api.sign_up()
    expired = issue_access_token(
        TEST_JWT_SECRET, user.id, user.email, ttl_s=60, now=time.time() - 3600
    )
    reply = await api.call("GET", "/me", token=expired)
    assert reply.status == 401 and reply.error_code == "token_expired"

    header, payload, signature = user.token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "00000000-0000-0000-0000-000000000001"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    tampered = f"{header}.{forged}.{signature}"
    other_secret = issue_access_token("another-secret-" * 4, user.id, user.email)
    none_header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').decode().rstrip("=")
    unsigned = f"{none_header}.{forged}."
    wrong_audience = issue_access_token(TEST_JWT_SECRET, user.id, user.email, audience="anon")
    for token in (tampered, other_secret, unsigned, wrong_audience, "garbage"):
        reply = await api.call("GET", "/me", token=token)
        assert reply.status == 401, token
        assert reply.error_code == "invalid_token"
        assert reply.headers.get("WWW-Authenticate") == "Bearer"
    anonymous = await api.call("GET", "/me")
    assert anonymous.status == 401 and anonymous.error_code == "unauthorized"


async def test_refresh_rotates_and_reuse_revokes_the_whole_family(
    api: Api, db: Database
) -> None:
    user = await api.sign_up()
    async with db.acquire() as conn:
        before = await conn.fetchval(
            "select last_activity_at from public.user_sessions_extended where id = $1",
            user.session_id,
        )
    first = await api.call("POST", "/auth/refresh", {"refresh_token": user.refresh_token})
    assert first.status == 200
    rotated = as_user(first.body)
    assert rotated.refresh_token != user.refresh_token
    assert rotated.session_id == user.session_id
    assert (await api.call("GET", "/me", token=rotated.token)).status == 200
    async with db.acquire() as conn:
        after = await conn.fetchval(
            "select last_activity_at from public.user_sessions_extended where id = $1",
            user.session_id,
        )
        stored = await conn.fetch("select token_hash from public.refresh_tokens")
    assert after > before
    assert all(user.refresh_token not in r["token_hash"] for r in stored)

    # The old token comes back (stolen copy): the family dies, including the new token.
    reuse = await api.call("POST", "/auth/refresh", {"refresh_token": user.refresh_token})
    assert reuse.status == 401 and reuse.error_code == "refresh_token_reused"
    child = await api.call("POST", "/auth/refresh", {"refresh_token": rotated.refresh_token})
    assert child.status == 401
    sessions = await api.ok("GET", "/me/sessions", token=rotated.token)
    assert user.session_id not in [s["id"] for s in sessions["items"]]


async def test_sign_out_revokes_the_session(api: Api) -> None:
    user = await api.sign_up()
    reply = await api.call("POST", "/auth/signout", {}, token=user.token)
    assert reply.status == 204
    again = await api.call("POST", "/auth/refresh", {"refresh_token": user.refresh_token})
    assert again.status == 401 and again.error_code == "invalid_refresh_token"
    unknown = await api.call("POST", "/auth/refresh", {"refresh_token": "not-a-token"})
    assert unknown.status == 401


async def test_sessions_record_the_client_and_can_be_revoked(api: Api) -> None:
    user = await api.sign_up()
    mac = await api.call(
        "POST", "/auth/signin", {"email": user.email, "password": PASSWORD},
        headers={"User-Agent": CHROME_MAC},
    )
    phone = await api.call(
        "POST", "/auth/signin", {"email": user.email, "password": PASSWORD},
        headers={"User-Agent": SAFARI_IPHONE},
    )
    mac_user, phone_user = as_user(mac.body), as_user(phone.body)
    listed = await api.all_pages("/me/sessions", token=mac_user.token, limit=1)
    by_id = {s["id"]: s for s in listed}
    assert len(by_id) == len(listed) == 3
    assert by_id[mac_user.session_id]["current"] is True
    assert (by_id[mac_user.session_id]["browser"], by_id[mac_user.session_id]["os"]) == (
        "Chrome", "Mac OS X"
    )
    assert by_id[mac_user.session_id]["device_type"] == "desktop"
    assert by_id[phone_user.session_id]["device_type"] == "mobile"
    assert by_id[phone_user.session_id]["os"] == "iOS"
    assert by_id[phone_user.session_id]["ip_address"] == "127.0.0.1"

    revoked = await api.call(
        "DELETE", f"/me/sessions/{phone_user.session_id}", token=mac_user.token
    )
    assert revoked.status == 204
    dead = await api.call("POST", "/auth/refresh", {"refresh_token": phone_user.refresh_token})
    assert dead.status == 401
    # Someone else's session is not found, not revoked.
    stranger = await api.sign_up()
    other = await api.call("DELETE", f"/me/sessions/{mac_user.session_id}", token=stranger.token)
    assert other.status == 404
    alive = await api.call("POST", "/auth/refresh", {"refresh_token": mac_user.refresh_token})
    assert alive.status == 200


async def test_profile_update(api: Api) -> None:
    user = await api.sign_up()
    updated = await api.ok(
        "PATCH",
        "/me",
        {
            "full_name": "Ada Lovelace",
            "bio": "Analyst",
            "github_username": "ada",
            "twitter_username": "ada_l",
            "website_url": "https://ada.example",
            "preferences": {"theme": "dark"},
        },
        token=user.token,
    )
    assert updated["full_name"] == "Ada Lovelace" and updated["preferences"] == {"theme": "dark"}
    me = await api.ok("GET", "/me", token=user.token)
    assert me["github_username"] == "ada" and me["website_url"] == "https://ada.example"
    bad = await api.call("PATCH", "/me", {"website_url": "javascript:alert(1)"}, token=user.token)
    assert bad.status == 422
    unknown = await api.call("PATCH", "/me", {"email": "x@y.test"}, token=user.token)
    assert unknown.status == 422


async def test_tokens_carry_the_sign_up_metadata_as_supabase_does(api: Api) -> None:
    email = "named@example.test"
    signed_up = await api.call(
        "POST", "/auth/signup", {"email": email, "password": PASSWORD, "full_name": "Ada L."}
    )
    assert signed_up.status == 201, signed_up.body
    signed_in = await api.sign_in(email)
    assert signed_in.status == 200, signed_in.body
    refreshed = await api.call(
        "POST", "/auth/refresh", {"refresh_token": signed_in.body["refresh_token"]}
    )
    assert refreshed.status == 200, refreshed.body
    for reply in (signed_up, signed_in, refreshed):
        claims = jwt.decode(
            reply.body["access_token"], TEST_JWT_SECRET, algorithms=["HS256"],
            audience="authenticated",
        )
        assert claims["user_metadata"] == {"full_name": "Ada L."}


async def test_sign_ups_are_limited_per_ip_and_do_not_touch_sign_in_limits(api: Api) -> None:
    first = await api.sign_up()
    for _ in range(19):  # 20 per ip per hour, duplicates included
        await api.sign_up()
    refused = await api.call(
        "POST", "/auth/signup", {"email": "one-more@example.test", "password": PASSWORD}
    )
    assert refused.status == 429 and refused.error_code == "too_many_sign_ups", refused.body
    assert int(refused.headers["Retry-After"]) > 0
    signed_in = await api.sign_in(first.email)
    assert signed_in.status == 200, signed_in.body
