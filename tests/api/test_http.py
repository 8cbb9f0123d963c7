"""HTTP edges: malformed bodies, bad ids, size limits, Origin allow-list and CORS."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp

from server.settings import Settings
from tests.api.client import Api
from tests.conftest import TEST_ORIGIN
from tests.support.servers import LiveServer


async def test_malformed_requests_are_4xx_never_500(api: Api) -> None:
    user = await api.sign_up()
    cases = [
        ("POST", "/workspaces", "{not json", 400),
        ("POST", "/workspaces", '{"name": "\\ud800"}', 400),  # lone surrogate
        ("POST", "/workspaces", '["a list"]', 422),
        ("POST", "/workspaces", '{"name": 42}', 422),
        ("POST", "/workspaces", '{"name": "x", "unknown": 1}', 422),
        ("POST", "/workspaces", '{"name": "nul \\u0000 byte"}', 422),
        ("POST", "/workspaces", '{"name": "x", "settings": {"k": "\\u0000"}}', 422),
        ("POST", "/workspaces", "", 422),
        ("POST", "/auth/signin", b"\xff\xfe", 400),
        ("POST", "/workspaces", '{"name": "x", "settings": ' + "[" * 5000 + "]" * 5000 + "}",
         400),
    ]
    for method, path, data, status in cases:
        reply = await api.call(method, path, token=user.token, data=data)
        assert reply.status == status, (data, reply.status, reply.body)
        assert reply.error_code, reply.body
    for path in ("/workspaces/not-a-uuid", "/files/123", "/projects/%00",
                 "/files/00000000-0000-0000-0000-000000000000"):
        reply = await api.call("GET", path, token=user.token)
        assert reply.status == 404 and reply.error_code == "not_found", (path, reply.body)
    # Big values in GIN-indexed JSON and deep-but-parseable nesting: refused or stored, not 500.
    nested: object = 1
    for _ in range(30):
        nested = [nested]
    for prefs in ({"k": "x" * 100_000}, {"k": nested}):
        reply = await api.call("PATCH", "/me", {"preferences": prefs}, token=user.token)
        assert reply.status in (200, 422), reply.body
    deep = '{"preferences": {"k": ' + "[" * 900 + "]" * 900 + "}}"
    reply = await api.call("PATCH", "/me", token=user.token, data=deep)
    assert reply.status == 400 and reply.error_code == "invalid_json", reply.body
    wrong_method = await api.call("PUT", "/workspaces", {}, token=user.token)
    assert wrong_method.status == 405 and wrong_method.error_code == "method_not_allowed"
    unknown = await api.call("GET", "/no/such/route", token=user.token)
    assert unknown.status == 404 and unknown.error_code == "not_found"


async def test_request_size_limit(
    live_server: Callable[..., Awaitable[LiveServer]], settings: Settings
) -> None:
    small = await live_server(dataclasses.replace(settings, max_request_bytes=2048))
    async with aiohttp.ClientSession() as session:
        api = Api(session, small.url)
        user = await api.sign_up()
        big = '{"name": "' + "x" * 4096 + '"}'
        reply = await api.call("POST", "/workspaces", token=user.token, data=big)
        assert reply.status == 413 and reply.error_code == "payload_too_large"

        async def chunks() -> AsyncIterator[bytes]:
            yield b'{"name": "'
            for _ in range(8):
                yield b"y" * 512
            yield b'"}'

        async with session.post(
            api.base + "/workspaces",
            data=chunks(),
            headers={"Authorization": f"Bearer {user.token}",
                     "Content-Type": "application/json"},
        ) as resp:
            assert resp.status == 413
            assert (await resp.json())["error"]["code"] == "payload_too_large"
        fits = await api.call("POST", "/workspaces", {"name": "fits"}, token=user.token)
        assert fits.status == 201


async def test_origin_allow_list_and_cors(api: Api, server: LiveServer) -> None:
    user = await api.sign_up()
    evil = await api.call("GET", "/me", token=user.token,
                          headers={"Origin": "https://evil.example"})
    assert evil.status == 403 and evil.error_code == "origin_not_allowed"
    evil_signin = await api.call("POST", "/auth/signin", {"email": user.email, "password": "x"},
                                 headers={"Origin": "https://evil.example"})
    assert evil_signin.status == 403

    allowed = await api.call("GET", "/me", token=user.token, headers={"Origin": TEST_ORIGIN})
    assert allowed.status == 200
    assert allowed.headers["access-control-allow-origin"] == TEST_ORIGIN
    assert allowed.headers["access-control-allow-credentials"] == "true"

    own = await api.call("GET", "/me", token=user.token, headers={"Origin": server.url})
    assert own.status == 200  # same origin as the server itself

    preflight = await api.call(
        "OPTIONS", "/workspaces",
        headers={
            "Origin": TEST_ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status == 200
    assert preflight.headers["access-control-allow-origin"] == TEST_ORIGIN
    assert "POST" in preflight.headers["access-control-allow-methods"]
    no_origin = await api.call("GET", "/me", token=user.token)
    assert no_origin.status == 200 and "access-control-allow-origin" not in no_origin.headers
    # With or without Origin the answer varies by it (a shared cache must not mix them).
    assert "Origin" in no_origin.headers["vary"] and "Origin" in allowed.headers["vary"]
