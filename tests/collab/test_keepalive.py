"""Keepalive pings (server/ws_transport.py): a socket that sent something during the interval
is not pinged; a silent one is, every interval, and one that stops answering is closed."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from server.ws_transport import DirectWebSocketProtocol
from tests.collab.test_ws_transport import EchoApp, serve

INTERVAL = 0.25


class CountingPings(DirectWebSocketProtocol):
    """Counts the pings each socket really wrote."""

    sent: list[int] = []

    def send_keepalive_ping(self) -> None:
        before = self.pending_ping_payload
        super().send_keepalive_ping()
        if self.pending_ping_payload is not None and self.pending_ping_payload != before:
            CountingPings.sent.append(id(self))


def serve_pinging(timeout: float = 1.0) -> contextlib.AbstractAsyncContextManager[str]:
    return serve(EchoApp(), CountingPings, ws_ping_interval=INTERVAL, ws_ping_timeout=timeout)


async def drain(ws: Any) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for _ in ws:
            pass


async def test_a_talking_socket_is_not_pinged_and_a_silent_one_is() -> None:
    CountingPings.sent = []
    async with serve_pinging() as url:
        async with connect(url + "/talk", ping_interval=None) as talking:
            reader = asyncio.create_task(drain(talking))
            for _ in range(int(2.0 / 0.1)):
                await talking.send(b"tick")
                await asyncio.sleep(0.1)
            assert CountingPings.sent == []
            reader.cancel()
        async with connect(url + "/quiet", ping_interval=None) as quiet:
            reader = asyncio.create_task(drain(quiet))  # pongs are answered while reading
            await asyncio.sleep(2.0)
            # Every interval (not every other one: a pong does not count as talking).
            assert len(CountingPings.sent) >= 2.0 / INTERVAL * 0.6
            reader.cancel()


async def test_a_socket_that_stops_answering_pings_is_closed() -> None:
    async with serve_pinging(timeout=0.5) as url:
        async with connect(url + "/dead", ping_interval=None) as ws:
            await asyncio.sleep(0.2)
            assert ws.transport is not None
            ws.transport.pause_reading()  # no pong from here on (a vanished peer)
            await asyncio.sleep(INTERVAL + 0.5 + 0.5)
            ws.transport.resume_reading()
            with contextlib.suppress(ConnectionClosed):
                while True:
                    await asyncio.wait_for(ws.recv(), 5)
            assert ws.close_code == 1011
