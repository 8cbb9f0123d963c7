"""Client addresses: X-Forwarded-For counts only from TRUSTED_PROXIES.

Clients here connect from distinct real loopback addresses (127.0.0.2, 127.0.0.3: the whole
127/8 is local on Linux), so per-ip limits can be observed without forging anything; the
address a sign-in recorded is read back from ``GET /me/sessions``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from websockets.asyncio.client import connect

from server.round_robin_proxy import RoundRobinProxy
from server.settings import Settings
from tests.api.client import PASSWORD, Api
from tests.conftest import TEST_ORIGIN
from tests.support.net import free_port
from tests.support.servers import LiveServer

FORGED = "203.0.113.66"


@pytest.fixture
async def client_from() -> AsyncIterator[Callable[[str, str], Api]]:
    """Factory: ``client_from("127.0.0.2", base_url)``, an API client bound to that address."""
    sessions: list[aiohttp.ClientSession] = []

    def make(address: str, base_url: str) -> Api:
        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(address, 0)))
        sessions.append(session)
        return Api(session, base_url)

    yield make
    for session in sessions:
        await session.close()


async def recorded_ip(api: Api, headers: dict[str, str] | None = None) -> str:
    """Sign up a new account (with ``headers``) and return the ip its session recorded."""
    email = f"ip-{uuid.uuid4().hex[:10]}@example.test"
    reply = await api.call(
        "POST", "/auth/signup", {"email": email, "password": PASSWORD}, headers=headers
    )
    assert reply.status == 201, reply.body
    sessions = await api.call("GET", "/me/sessions", token=reply.body["access_token"])
    assert sessions.status == 200, sessions.body
    [session] = sessions.body["items"]
    return str(session["ip_address"])


def test_trusted_proxies_is_empty_by_default_and_validated() -> None:
    assert Settings.from_env({"JWT_SECRET": "x" * 40}).trusted_proxies == ()
    parsed = Settings.from_env({"JWT_SECRET": "x" * 40, "TRUSTED_PROXIES": "10.0.0.5, fd00::/8"})
    assert parsed.trusted_proxies == ("10.0.0.5", "fd00::/8")
    with pytest.raises(ValueError, match="TRUSTED_PROXIES"):
        Settings.from_env({"JWT_SECRET": "x" * 40, "TRUSTED_PROXIES": "nginx"})


async def test_a_forged_header_from_a_direct_client_is_ignored(
    live_server: Callable[..., Awaitable[LiveServer]],
    client_from: Callable[[str, str], Api],
) -> None:
    server = await live_server()  # TRUSTED_PROXIES unset: nobody is trusted, loopback neither
    api = client_from("127.0.0.1", server.url)
    assert await recorded_ip(api, {"X-Forwarded-For": FORGED}) == "127.0.0.1"
    # The sign-up limit (20 per ip per hour) holds whatever address the client claims.
    for i in range(19):
        await recorded_ip(api, {"X-Forwarded-For": f"198.51.100.{i}"})
    refused = await api.call(
        "POST", "/auth/signup", {"email": "more@example.test", "password": PASSWORD},
        headers={"X-Forwarded-For": "198.51.100.200"},
    )
    assert refused.status == 429 and refused.error_code == "too_many_sign_ups", refused.body
    # Another client has its own allowance.
    assert await recorded_ip(client_from("127.0.0.2", server.url)) == "127.0.0.2"


async def test_a_listed_proxy_is_trusted_for_the_address_it_passes(
    settings: Settings,
    live_server: Callable[..., Awaitable[LiveServer]],
    client_from: Callable[[str, str], Api],
) -> None:
    server = await live_server(dataclasses.replace(settings, trusted_proxies=("127.0.0.2",)))
    assert await recorded_ip(client_from("127.0.0.2", server.url),
                             {"X-Forwarded-For": FORGED}) == FORGED
    # Only the listed address: another loopback client is not a proxy.
    assert await recorded_ip(client_from("127.0.0.3", server.url),
                             {"X-Forwarded-For": FORGED}) == "127.0.0.3"


@pytest.fixture
async def behind_cluster_proxy(
    settings: Settings, live_server: Callable[..., Awaitable[LiveServer]]
) -> AsyncIterator[str]:
    """Two nodes trusting the loopback proxy (as ``make cluster`` sets them up), the proxy's URL."""
    node_settings = dataclasses.replace(settings, trusted_proxies=("127.0.0.1",))
    nodes = [await live_server(node_settings) for _ in range(2)]
    proxy = RoundRobinProxy("127.0.0.1", free_port(), [("127.0.0.1", n.port) for n in nodes])
    await proxy.start()
    yield f"http://127.0.0.1:{proxy.port}"
    await proxy.close()


async def test_through_the_cluster_proxy_each_client_has_its_own_real_address(
    behind_cluster_proxy: str, client_from: Callable[[str, str], Api]
) -> None:
    first = client_from("127.0.0.2", behind_cluster_proxy)
    second = client_from("127.0.0.3", behind_cluster_proxy)
    # Several requests per kept-alive connection, each stamped with the real address.
    for _ in range(3):
        assert await recorded_ip(first) == "127.0.0.2"
        assert await recorded_ip(second, {"X-Forwarded-For": FORGED}) == "127.0.0.3"
        assert await recorded_ip(first, {"X-Forwarded-For": f"{FORGED}, 127.0.0.9"}) == (
            "127.0.0.2"
        )


async def test_the_cluster_proxy_limits_sign_ups_per_real_client(
    behind_cluster_proxy: str, client_from: Callable[[str, str], Api]
) -> None:
    attacker = client_from("127.0.0.2", behind_cluster_proxy)
    for i in range(20):
        await recorded_ip(attacker, {"X-Forwarded-For": f"198.51.100.{i}"})
    for i in range(5):
        refused = await attacker.call(
            "POST", "/auth/signup", {"email": f"m{i}@example.test", "password": PASSWORD},
            headers={"X-Forwarded-For": f"192.0.2.{i}"},
        )
        assert refused.status == 429 and refused.error_code == "too_many_sign_ups", refused.body
    assert await recorded_ip(client_from("127.0.0.3", behind_cluster_proxy)) == "127.0.0.3"


async def test_the_cluster_proxy_carries_websockets_and_request_bodies(
    behind_cluster_proxy: str, client_from: Callable[[str, str], Api]
) -> None:
    api = client_from("127.0.0.2", behind_cluster_proxy)
    email = f"ws-{uuid.uuid4().hex[:8]}@example.test"
    signed = await api.call("POST", "/auth/signup", {"email": email, "password": PASSWORD})
    token = signed.body["access_token"]
    workspace = await api.call("POST", "/workspaces", {"name": "Proxy"}, token=token)
    project = await api.call(
        "POST", f"/workspaces/{workspace.body['id']}/projects", {"name": "P"}, token=token
    )
    # A body sent in chunks (Transfer-Encoding: chunked) crosses the proxy intact.
    content = "x" * 200_000

    async def chunks() -> AsyncIterator[bytes]:
        body = f'{{"path": "big.txt", "content": "{content}"}}'.encode()
        for start in range(0, len(body), 65_536):
            yield body[start:start + 65_536]

    async with api.session.post(
        f"{api.base}/projects/{project.body['id']}/files", data=chunks(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    ) as resp:
        created = await resp.json()
        assert resp.status == 201, created
    read = await api.call("GET", f"/files/{created['id']}", token=token)
    assert read.body["content"] == content
    # The project channel: upgrade, then frames both ways through the proxy.
    ws_url = behind_cluster_proxy.replace("http", "ws")
    async with connect(
        f"{ws_url}/ws/projects/{project.body['id']}?token={token}",
        origin=TEST_ORIGIN,  # type: ignore[arg-type]
    ) as socket:
        hello = await asyncio.wait_for(socket.recv(), 10)
        assert '"hello"' in str(hello)
        await socket.send('{"type": "ping"}')
        pong = await asyncio.wait_for(socket.recv(), 10)
        assert '"pong"' in str(pong)
