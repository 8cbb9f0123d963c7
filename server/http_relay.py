"""One client connection relayed to one backend connection as HTTP/1.1, for a local proxy.

The proxy must tell the backend who the client is, and the backend must not believe a
client that claims to be someone else: every request head (each request of a kept-alive
connection, and each WebSocket handshake) is parsed with h11 and forwarded with
``X-Forwarded-For: <the client's socket address>`` and ``X-Forwarded-Proto: http``, and with
whatever forwarding headers the client sent (``X-Forwarded-*``, ``X-Real-IP``, ``Forwarded``)
removed. Backends list the proxy in ``TRUSTED_PROXIES``.

Bodies stream both ways with their framing kept (Content-Length or chunked, ``100
Continue``, a response that comes before the request body is done). After ``101 Switching
Protocols`` the connection becomes a byte pipe (WebSockets). When the backend closes an idle
kept-alive connection, the client's is closed too, as a direct client would see it. A
malformed request gets ``400`` and the connection is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import h11

CHUNK = 64 * 1024
MAX_HEAD_BYTES = 64 * 1024
# Headers a client could use to claim another address or scheme; the relay sets its own.
FORWARDING_HEADERS = frozenset(
    {b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"x-real-ip", b"forwarded"}
)
BAD_REQUEST = b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
BAD_GATEWAY = b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"

Streams = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class _Side:
    """One socket and the h11 state machine that reads and writes it."""

    def __init__(self, streams: Streams, role: type[h11.CLIENT] | type[h11.SERVER]) -> None:
        self.reader, self.writer = streams
        self.conn = h11.Connection(role, max_incomplete_event_size=MAX_HEAD_BYTES)

    async def next_event(self) -> Any:
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            self.conn.receive_data(await self.reader.read(CHUNK))

    async def send(self, event: Any) -> None:
        data = self.conn.send(event)
        if data:
            self.writer.write(data)
            await self.writer.drain()

    @property
    def response_started(self) -> bool:
        return self.conn.our_state not in (h11.IDLE, h11.SEND_RESPONSE)


def stamped(request: h11.Request, client_ip: str) -> h11.Request:
    """``request`` with the client's forwarding headers replaced by the relay's own."""
    headers = [
        (name, value)
        for name, value in request.headers.raw_items()
        if name.lower() not in FORWARDING_HEADERS
    ]
    headers.append((b"X-Forwarded-For", client_ip.encode()))
    headers.append((b"X-Forwarded-Proto", b"http"))
    return h11.Request(method=request.method, target=request.target, headers=headers)


async def relay_http(client: Streams, backend: Streams, client_ip: str) -> None:
    """Relay requests from ``client`` to ``backend`` until either side closes."""
    front = _Side(client, h11.SERVER)
    back = _Side(backend, h11.CLIENT)
    try:
        while True:
            request = await _next_request(front, back)
            if request is None:
                return
            await back.send(stamped(request, client_ip))
            upload = asyncio.create_task(_pump_request_body(front, back))
            try:
                switching = await _pump_response(back, front)
            except BaseException:
                upload.cancel()
                raise
            if not upload.done():
                # Answered before the request was complete (e.g. 413): end the connection.
                upload.cancel()
                return
            await upload
            if switching is not None:
                await front.send(switching)
                await _switch_to_pipe(front, back)
                return
            if not _both_done(front, back):
                return
            front.conn.start_next_cycle()
            back.conn.start_next_cycle()
    except h11.RemoteProtocolError:
        # The client sent something that is not HTTP/1.1, or the backend answered so.
        if not front.response_started:
            with contextlib.suppress(ConnectionError, OSError):
                front.writer.write(
                    BAD_REQUEST if front.conn.their_state is h11.ERROR else BAD_GATEWAY
                )
                await front.writer.drain()
    except h11.LocalProtocolError:
        if not front.response_started:
            with contextlib.suppress(ConnectionError, OSError):
                front.writer.write(BAD_REQUEST)
                await front.writer.drain()
    except (ConnectionError, OSError):
        pass


async def _next_request(front: _Side, back: _Side) -> h11.Request | None:
    """The client's next request, or None when it (or the idle backend) closes first."""
    wanted = asyncio.create_task(front.next_event())
    backend_gone = asyncio.create_task(back.reader.read(1))
    try:
        await asyncio.wait((wanted, backend_gone), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (wanted, backend_gone):
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    if backend_gone.done() and not backend_gone.cancelled():
        # Anything from an idle backend ends the connection: EOF (its keep-alive timeout),
        # or bytes nobody asked for.
        return None
    event = wanted.result()
    return event if isinstance(event, h11.Request) else None


async def _pump_request_body(front: _Side, back: _Side) -> None:
    while True:
        event = await front.next_event()
        if isinstance(event, h11.ConnectionClosed):
            raise ConnectionError("client closed mid-request")
        await back.send(event)
        if isinstance(event, h11.EndOfMessage):
            return


async def _pump_response(back: _Side, front: _Side) -> h11.InformationalResponse | None:
    """Forward the response; the ``101`` to send once the request is through, if switching."""
    while True:
        event = await back.next_event()
        if isinstance(event, h11.ConnectionClosed):
            raise ConnectionError("backend closed before answering")
        if isinstance(event, h11.InformationalResponse) and event.status_code == 101:
            return event
        await front.send(event)
        if isinstance(event, h11.EndOfMessage):
            return None


def _both_done(front: _Side, back: _Side) -> bool:
    return all(
        state is h11.DONE
        for state in (front.conn.our_state, front.conn.their_state,
                      back.conn.our_state, back.conn.their_state)
    )


async def _switch_to_pipe(front: _Side, back: _Side) -> None:
    """After ``101``: bytes already read on either side first, then a plain pipe both ways."""
    from_client, _ = front.conn.trailing_data
    from_backend, _ = back.conn.trailing_data
    if from_client:
        back.writer.write(from_client)
    if from_backend:
        front.writer.write(from_backend)
    await asyncio.gather(pipe(front.reader, back.writer), pipe(back.reader, front.writer))


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, then pass the EOF on (half-close)."""
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            if writer.can_write_eof():
                writer.write_eof()
