"""The cluster proxy's HTTP relay against a raw backend whose every byte the test controls."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from server.round_robin_proxy import RoundRobinProxy
from tests.support.net import free_port

RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


@dataclass
class RawBackend:
    """Answers each request head with ``RESPONSE``; closes after ``answers`` of them."""

    answers: int = 100
    heads: list[bytes] = field(default_factory=list)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            for _ in range(self.answers):
                head = await reader.readuntil(b"\r\n\r\n")
                self.heads.append(head)
                writer.write(RESPONSE)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def relay() -> AsyncIterator[tuple[RawBackend, int]]:
    backend = RawBackend()
    server = await asyncio.start_server(backend.handle, "127.0.0.1", 0)
    backend_port = server.sockets[0].getsockname()[1]
    proxy = RoundRobinProxy("127.0.0.1", free_port(), [("127.0.0.1", backend_port)])
    await proxy.start()
    yield backend, proxy.port
    await proxy.close()
    server.close()
    await server.wait_closed()


async def exchange(port: int, data: bytes, source: str = "127.0.0.2") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    writer.write(data)
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.read(), 10)  # until the proxy closes
    finally:
        writer.close()


async def test_every_request_of_a_connection_carries_only_the_real_address(
    relay: tuple[RawBackend, int],
) -> None:
    backend, port = relay
    forged = (
        b"GET /a HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.1\r\n"
        b"x-real-ip: 203.0.113.2\r\nForwarded: for=203.0.113.3\r\nX-Forwarded-Proto: https\r\n\r\n"
    )
    closing = b"GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    answer = await exchange(port, forged + b"GET /b HTTP/1.1\r\nHost: x\r\n\r\n" + closing)
    assert answer.count(b"200 OK") == 3
    assert len(backend.heads) == 3
    for head in backend.heads:
        lines = [line.lower() for line in head.split(b"\r\n")]
        assert b"x-forwarded-for: 127.0.0.2" in lines, head
        assert b"x-forwarded-proto: http" in lines, head
        assert not [line for line in lines if b"203.0.113" in line], head


async def test_an_idle_connection_the_backend_closed_is_closed_for_the_client(
    relay: tuple[RawBackend, int],
) -> None:
    backend, port = relay
    backend.answers = 1  # like uvicorn's keep-alive timeout, right after the answer
    answer = await exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert answer.endswith(b"ok")  # and then EOF: the client reconnects for its next request


async def test_a_malformed_request_gets_400(relay: tuple[RawBackend, int]) -> None:
    backend, port = relay
    answer = await exchange(port, b"NOT HTTP AT ALL\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400")
    assert backend.heads == []


async def test_a_backend_that_refuses_is_skipped_and_none_is_503() -> None:
    dead = free_port()
    backend = RawBackend()
    server = await asyncio.start_server(backend.handle, "127.0.0.1", 0)
    live = server.sockets[0].getsockname()[1]
    proxy = RoundRobinProxy("127.0.0.1", free_port(), [("127.0.0.1", dead), ("127.0.0.1", live)])
    await proxy.start()
    try:
        for _ in range(2):
            answer = await exchange(
                proxy.port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            )
            assert answer.startswith(b"HTTP/1.1 200")
    finally:
        await proxy.close()
        server.close()
        await server.wait_closed()
    nobody = RoundRobinProxy("127.0.0.1", free_port(), [("127.0.0.1", dead)])
    await nobody.start()
    try:
        answer = await exchange(nobody.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 503")
    finally:
        await nobody.close()
