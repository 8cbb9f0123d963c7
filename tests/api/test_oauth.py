"""OAuth sign-in and connections against local servers speaking each provider's wire format."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from jobs import Worker, WorkerConfig
from persistence.db import Database
from server.oauth import tokens
from server.oauth.config import OAuthConfig
from server.oauth.errors import ReconnectRequired
from server.secret_jobs import REFRESH, secret_jobs
from server.settings import Settings
from tests.api.client import Api
from tests.api.oauth_browser import Browser
from tests.fakes.oauth_providers import FLAVORS, FakeOAuthProvider, FakeUser, s256
from tests.jobs.procs import eventually
from tests.support.servers import LiveServer

Fakes = dict[str, FakeOAuthProvider]


@pytest.fixture
async def fakes() -> AsyncIterator[Fakes]:
    started = {flavor: FakeOAuthProvider(flavor) for flavor in FLAVORS}
    for fake in started.values():
        await fake.start()
    yield started
    for fake in started.values():
        await fake.stop()


@pytest.fixture
async def server(
    live_server: Callable[..., Awaitable[LiveServer]], settings: Settings, fakes: Fakes
) -> LiveServer:
    env: dict[str, str] = {}
    for fake in fakes.values():
        env |= fake.env()
    # No in-process worker: the refresh job would race the refresh tests (they call it).
    return await live_server(dataclasses.replace(
        settings, oauth=OAuthConfig.from_env(env),
        jobs=dataclasses.replace(settings.jobs, worker_in_process=False)))


@pytest.fixture
async def browser(server: LiveServer) -> AsyncIterator[Browser]:
    opened = Browser(server.url)
    yield opened
    await opened.close()


@pytest.fixture
async def other_browser(server: LiveServer) -> AsyncIterator[Browser]:
    opened = Browser(server.url)
    yield opened
    await opened.close()


async def test_no_client_id_no_provider(
    live_server: Callable[..., Awaitable[LiveServer]], settings: Settings
) -> None:
    # The default settings configure no provider: `make run` offers none and needs none.
    plain = await live_server(settings)
    async with aiohttp.ClientSession() as session:
        api = Api(session, plain.url)
        reply = await api.call("GET", "/auth/providers")
        start = await api.call("POST", "/auth/oauth/github/start", {"purpose": "sign_in"})
    assert reply.status == 200 and reply.body == {"providers": []}
    assert start.status == 404 and start.error_code == "provider_not_offered"


async def test_configured_providers_are_offered(browser: Browser) -> None:
    reply = await browser.api.call("GET", "/auth/providers")
    assert [p["name"] for p in reply.body["providers"]] == list(FLAVORS)


@pytest.mark.parametrize("flavor", FLAVORS)
async def test_sign_in_creates_the_account_then_signs_it_in_again(
    flavor: str, browser: Browser, other_browser: Browser, fakes: Fakes, db: Database
) -> None:
    fake = fakes[flavor]
    fake.user = FakeUser("1001", f"{flavor}-user", "Ada Lovelace", f"ada-{flavor}@example.test")
    started = await browser.start(flavor)
    url = started.body["authorization_url"]
    callback = await browser.authorize(url)
    code = fake.last_code()
    if flavor != "bitbucket":  # Bitbucket ignores PKCE; the others must see S256
        assert code.challenge is not None
    assert code.redirect_uri == f"{browser.base_url}/api/v1/auth/oauth/{flavor}/callback"
    landing = await browser.land(callback)
    assert landing.path == "/" and landing.error is None, landing.fragment
    reply = await browser.exchange(landing.fragment["oauth"])
    assert reply.status == 200, reply.body
    user = reply.body["user"]
    assert user["email"] == f"ada-{flavor}@example.test"
    me = await browser.api.ok("GET", "/me", token=reply.body["access_token"])
    assert me["full_name"] == "Ada Lovelace"

    # The PKCE verifier went to the token endpoint and matches the challenge.
    token_path = {"github": "/login/oauth/access_token", "gitlab": "/oauth/token",
                  "bitbucket": "/site/oauth2/access_token", "google": "/token"}[flavor]
    sent = fake.requests_to(token_path)[-1]
    if code.challenge is not None:
        assert s256(sent.form["code_verifier"]) == code.challenge
    if flavor == "bitbucket":
        assert sent.headers["Authorization"].startswith("Basic ")
        assert "client_secret" not in sent.form
    else:
        assert sent.form["client_secret"] == fake.client_secret

    # Stored encrypted, never returned.
    async with db.acquire() as conn:
        row = await conn.fetchrow(
            "select access_token, refresh_token from public.oauth_connections where user_id = $1",
            uuid.UUID(user["id"]),
        )
    plain = next(iter(fake.access))
    assert row["access_token"].startswith("v1:") and plain not in row["access_token"]
    connections = await browser.api.call("GET", "/me/connections",
                                         token=reply.body["access_token"])
    assert connections.status == 200
    assert [c["provider"] for c in connections.body["connections"]] == [flavor]
    assert plain not in str(connections.body)

    # The same provider account signs in as the same user, from another browser too.
    again = await other_browser.sign_in(flavor)
    assert again.id == user["id"]


async def test_denied_consent(browser: Browser, fakes: Fakes, db: Database) -> None:
    fakes["github"].deny = True
    landing = await browser.round_trip("github")
    assert landing.error == "access_denied"
    async with db.acquire() as conn:
        assert await conn.fetchval("select count(*) from public.oauth_connections") == 0


async def test_a_replayed_state_is_refused(browser: Browser, fakes: Fakes) -> None:
    started = await browser.start("gitlab")
    callback = await browser.authorize(started.body["authorization_url"])
    first = await browser.land(callback)
    assert first.error is None
    replay = await browser.land(callback)
    assert replay.error == "state_reused"


async def test_state_is_bound_to_the_browser_that_started(
    browser: Browser, other_browser: Browser
) -> None:
    # Login CSRF: the attacker starts a flow and sends the victim its callback URL.
    started = await browser.start("github")
    callback = await browser.authorize(started.body["authorization_url"])
    stolen = await other_browser.land(callback)
    assert stolen.error == "state_mismatch"
    # Refused without being spent: the browser that started it still completes it.
    mine = await browser.land(callback)
    assert mine.error is None and "oauth" in mine.fragment


async def test_unknown_state_and_grant_from_another_browser(
    browser: Browser, other_browser: Browser
) -> None:
    forged = await browser.land(
        f"{browser.base_url}/api/v1/auth/oauth/github/callback?code=x&state={'a' * 43}"
    )
    assert forged.error == "invalid_state"
    landing = await browser.round_trip("github")
    grant = landing.fragment["oauth"]
    elsewhere = await other_browser.exchange(grant)
    assert elsewhere.status == 400 and elsewhere.error_code == "invalid_grant_code"
    assert (await browser.exchange(grant)).status == 200
    reused = await browser.exchange(grant)
    assert reused.status == 400 and reused.error_code == "invalid_grant_code"


@pytest.mark.parametrize("flavor", FLAVORS)
async def test_an_expired_code_is_refused_by_the_provider(
    flavor: str, browser: Browser, fakes: Fakes
) -> None:
    fakes[flavor].code_ttl_s = -1  # every code has expired by the time it is exchanged
    landing = await browser.round_trip(flavor)
    assert landing.error == "provider_error"
    # GitHub says it with HTTP 200 and its own error name, the others with 400.
    expected = "bad_verification_code" if flavor == "github" else "invalid_grant"
    assert landing.fragment["detail"] == expected


@pytest.mark.parametrize(
    ("overrides", "unknown_key"),
    [
        ({"nonce": "not-the-nonce-we-sent"}, False),
        ({"aud": "someone-else"}, False),
        ({"iss": "https://evil.example.test"}, False),
        ({"exp": 1_600_000_000, "iat": 1_599_990_000}, False),
        ({}, True),  # signed by a key the JWKS does not have (also after a refetch)
    ],
    ids=["wrong-nonce", "wrong-aud", "wrong-iss", "expired", "unknown-key"],
)
async def test_google_id_token_checks(
    overrides: dict[str, object], unknown_key: bool, browser: Browser, fakes: Fakes,
    db: Database,
) -> None:
    fakes["google"].id_token_overrides = overrides
    fakes["google"].sign_with_unknown_key = unknown_key
    landing = await browser.round_trip("google")
    assert landing.error == "invalid_id_token", landing.fragment
    async with db.acquire() as conn:
        assert await conn.fetchval("select count(*) from auth.users") == 0
    if unknown_key:
        assert len(fakes["google"].requests_to("/oauth2/v3/certs")) == 2


@pytest.mark.parametrize("flavor", FLAVORS)
async def test_an_unverified_email_never_links_to_an_existing_account(
    flavor: str, browser: Browser, fakes: Fakes, db: Database
) -> None:
    victim = await browser.api.sign_up(f"victim-{flavor}@example.test")
    fakes[flavor].user = FakeUser("666", "mallory", "Mallory", victim.email, email_verified=False)
    landing = await browser.round_trip(flavor)
    assert landing.error == "email_unverified"
    async with db.acquire() as conn:
        assert await conn.fetchval("select count(*) from public.oauth_connections") == 0
        assert await conn.fetchval("select count(*) from auth.users") == 1


async def test_a_verified_email_links_to_an_account_whose_email_is_confirmed(
    browser: Browser, fakes: Fakes
) -> None:
    fakes["github"].user = FakeUser("76", "grace", "Grace", "grace@example.test")
    existing = await browser.sign_in("github")  # a provider's sign-in confirmed the email
    fakes["gitlab"].user = FakeUser("77", "grace", "Grace", "Grace@Example.test")
    signed_in = await browser.sign_in("gitlab")
    assert signed_in.id == existing.id


async def test_a_password_account_is_never_linked_by_email_until_its_owner_connects(
    browser: Browser, fakes: Fakes, db: Database
) -> None:
    """Anyone can sign up with someone else's address (no confirmation mail exists): a
    provider verifying that address must not hand the squatter's account to its owner."""
    squatted = await browser.api.sign_up("grace@example.test")
    fakes["gitlab"].user = FakeUser("77", "grace", "Grace", "Grace@Example.test")
    landing = await browser.round_trip("gitlab")
    assert landing.error == "email_unconfirmed"
    async with db.acquire() as conn:
        assert await conn.fetchval("select count(*) from public.oauth_connections") == 0
        assert await conn.fetchval("select count(*) from auth.users") == 1
        assert await conn.fetchval(
            "select email_confirmed_at from auth.users where id = $1", squatted.id) is None
    # The password's holder signs in and connects GitLab, which verified the same address:
    # now the email is confirmed here, and another provider's sign-in links to it.
    landing = await browser.round_trip("gitlab", "connect", squatted.token)
    assert landing.fragment == {"oauth_connected": "gitlab"}
    fakes["github"].user = FakeUser("78", "grace", "Grace", "grace@example.test")
    assert (await browser.sign_in("github")).id == squatted.id


async def test_connect_attaches_to_the_signed_in_user_only(
    browser: Browser, other_browser: Browser, fakes: Fakes
) -> None:
    alice = await browser.api.sign_up()
    fakes["gitlab"].user = FakeUser("501", "alice-gl", "Alice", "not-alices@example.test")
    no_token = await browser.start("gitlab", "connect")
    assert no_token.status == 401
    landing = await browser.round_trip("gitlab", "connect", alice.token)
    assert landing.fragment == {"oauth_connected": "gitlab"}
    listed = await browser.api.ok("GET", "/me/connections", token=alice.token)
    [connection] = listed["connections"]
    assert connection["username"] == "alice-gl" and "write_repository" in connection["scopes"]
    # The same GitLab account cannot be connected by someone else.
    bob = await other_browser.api.sign_up()
    taken = await other_browser.round_trip("gitlab", "connect", bob.token)
    assert taken.error == "identity_taken"
    # ...and now signs in as Alice, whatever its email says.
    assert (await other_browser.sign_in("gitlab")).id == alice.id


@pytest.mark.parametrize(("flavor", "revoked"),
                         [("github", True), ("gitlab", True), ("google", True),
                          ("bitbucket", None)])
async def test_disconnect_revokes_where_the_provider_can(
    flavor: str, revoked: bool | None, browser: Browser, fakes: Fakes
) -> None:
    user = await browser.sign_in(flavor)
    reply = await browser.api.call("DELETE", f"/me/connections/{flavor}", token=user.token)
    assert reply.status == 200 and reply.body == {"provider": flavor, "revoked": revoked}
    assert len(fakes[flavor].revocations) == (1 if revoked else 0)
    if revoked:
        assert all(t.revoked for t in fakes[flavor].access.values())
    listed = await browser.api.ok("GET", "/me/connections", token=user.token)
    assert listed["connections"] == []
    missing = await browser.api.call("DELETE", f"/me/connections/{flavor}", token=user.token)
    assert missing.status == 404


async def test_return_to_must_stay_on_this_site(browser: Browser) -> None:
    for bad in ("//evil.example.test/", "https://evil.example.test/", "/\\evil"):
        reply = await browser.start("github", return_to=bad)
        assert reply.status == 422, bad
    ok = await browser.start("github", return_to="/projects")
    callback = await browser.authorize(ok.body["authorization_url"])
    landing = await browser.land(callback)
    assert landing.path == "/projects" and "oauth" in landing.fragment


async def _expire(db: Database, user_id: str, provider: str, seconds: float) -> None:
    async with db.acquire() as conn:
        await conn.execute(
            "update public.oauth_connections set token_expires_at = $3 "
            "where user_id = $1 and provider = $2",
            uuid.UUID(user_id), provider, datetime.now(UTC) + timedelta(seconds=seconds),
        )


async def test_tokens_are_refreshed_before_expiry_and_rotation_is_kept(
    browser: Browser, server: LiveServer, fakes: Fakes, db: Database
) -> None:
    svc = server.app.state.services.oauth
    user = await browser.sign_in("gitlab")
    first = await tokens.access_token(svc, uuid.UUID(user.id), "gitlab")
    assert first.access_token in fakes["gitlab"].access and first.git_username == "oauth2"
    await _expire(db, user.id, "gitlab", 60)  # within the refresh margin
    second = await tokens.access_token(svc, uuid.UUID(user.id), "gitlab")
    assert second.access_token != first.access_token
    assert not fakes["gitlab"].access[second.access_token].revoked
    # GitLab rotated the refresh token: the new one is stored, the old one is dead.
    await _expire(db, user.id, "gitlab", -5)
    third = await tokens.access_token(svc, uuid.UUID(user.id), "gitlab")
    assert third.access_token not in (first.access_token, second.access_token)
    assert sum(1 for t in fakes["gitlab"].refresh.values() if not t.revoked) == 1


async def test_refused_refresh_means_reconnect_and_the_job_refreshes_what_is_due(
    browser: Browser, server: LiveServer, fakes: Fakes, db: Database
) -> None:
    svc = server.app.state.services.oauth
    user = await browser.sign_in("gitlab")
    await _expire(db, user.id, "gitlab", 120)
    assert await tokens.refresh_expiring(svc, within_s=600) == 1
    assert await tokens.refresh_expiring(svc, within_s=600) == 0  # idempotent: done
    for token in fakes["gitlab"].refresh.values():
        token.revoked = True
    await _expire(db, user.id, "gitlab", -5)
    with pytest.raises(ReconnectRequired):
        await tokens.access_token(svc, uuid.UUID(user.id), "gitlab")
    listed = await browser.api.ok("GET", "/me/connections", token=user.token)
    assert listed["connections"][0]["status"] == "reauth_required"
    # Connecting again makes it usable.
    landing = await browser.round_trip("gitlab", "connect", user.token)
    assert landing.fragment == {"oauth_connected": "gitlab"}
    assert (await tokens.access_token(svc, uuid.UUID(user.id), "gitlab")).access_token


async def test_the_refresh_job_runs_on_the_queue(
    browser: Browser, server: LiveServer, fakes: Fakes, db: Database, database_url: str
) -> None:
    user = await browser.sign_in("gitlab")
    await _expire(db, user.id, "gitlab", 120)
    before = set(fakes["gitlab"].access)
    refresh_job = [j for j in secret_jobs(server.settings) if j.name == REFRESH]
    worker = Worker(db, refresh_job, dsn=database_url, config=WorkerConfig(lease_s=5))
    await worker.start()  # the recurring job's current period runs at once

    async def refreshed() -> Any:
        async with db.acquire() as conn:
            return await conn.fetchval(
                "select output from public.background_jobs where job_name = $1 "
                "and status = 'completed'", REFRESH)

    try:
        output = await eventually(refreshed, 30, "the refresh job")
    finally:
        await worker.stop()
    assert output == {"due": 1}
    assert len(set(fakes["gitlab"].access) - before) == 1
