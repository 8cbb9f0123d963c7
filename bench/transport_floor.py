"""Issue 21's relay floor: the least a document-socket server can do, on each transport.

    python bench/transport_floor.py TRANSPORT PORT
    TRANSPORT: uvicorn-direct | uvicorn-asgi | picows      (granian: see ``__rsgi__`` below,
    served by ``granian --interface rsgi bench.transport_floor:app``)

No CRDT and no state: a client's sync step 1 is answered with an empty step 2 (so the stock
y-websocket client reports ``synced``), every other binary frame is relayed to the other
sockets of the same path, in the order received. No authentication, no database. The
clients' texts still converge: every client joins before anyone types, and each socket
receives every other client's updates in one order.

- ``uvicorn-direct``: uvicorn's sans-I/O protocol as production runs it
  (server/ws_transport.py's ``DirectWebSocketProtocol``): sockets detach from ASGI and
  frames are written straight to the transport.
- ``uvicorn-asgi``: the same app through plain ASGI ``send``/``receive`` on uvicorn's
  stock sans-I/O protocol (what the direct channel saves).
- ``picows``: a picows listener per socket; frames sent with ``WSTransport.send``.
- granian RSGI: one coroutine per socket awaiting ``receive``; relayed with
  ``send_bytes`` (awaited in order, which is what keeps a peer's frames ordered).
"""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: the repository root on the path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# [messageSync, syncStep2, length 2, update with no structs and an empty delete set]
EMPTY_STEP2 = bytes((0, 1, 2, 0, 0))


def is_step1(data: bytes) -> bool:
    return len(data) > 1 and data[0] == 0 and data[1] == 0


Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]


# --- uvicorn (direct channel or plain ASGI) ---------------------------------------------


class AsgiRelay:
    """The ASGI app: a room per path; detached sockets when the direct channel is there."""

    def __init__(self) -> None:
        self.rooms: dict[str, set[Any]] = {}

    async def __call__(
        self, scope: Scope, receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        if scope["type"] != "websocket":
            return
        from server.ws_transport import direct_channel

        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        room = self.rooms.setdefault(scope["path"], set())
        channel = direct_channel(scope)
        if channel is not None and channel.nothing_queued:
            self._detach(channel, room)
            return
        await self._serve(room, receive, send)

    @staticmethod
    def _detach(channel: Any, room: set[Any]) -> None:
        def on_frame(data: bytes | str) -> None:
            if isinstance(data, str):
                return
            if is_step1(data):
                channel.send_bytes(EMPTY_STEP2)
                return
            for other in room:
                if other is not channel:
                    other.send_bytes(data)

        room.add(channel)
        channel.detach(on_frame, lambda: room.discard(channel))

    @staticmethod
    async def _serve(
        room: set[Any], receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        room.add(send)
        try:
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    return
                data = message.get("bytes")
                if data is None:
                    continue
                if is_step1(data):
                    await send({"type": "websocket.send", "bytes": EMPTY_STEP2})
                    continue
                frame = {"type": "websocket.send", "bytes": data}
                for other in list(room):
                    if other is not send:
                        try:
                            await other(frame)
                        except Exception:  # that peer is gone; its own loop removes it
                            pass
        finally:
            room.discard(send)


async def serve_uvicorn(port: int, direct: bool) -> None:
    import uvicorn
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

    from server.ws_transport import DirectWebSocketProtocol

    config = uvicorn.Config(
        AsgiRelay(), host="127.0.0.1", port=port, log_level="warning", lifespan="off",
        ws=DirectWebSocketProtocol if direct else WebSocketsSansIOProtocol,
        ws_per_message_deflate=False, loop="uvloop", http="httptools",
    )
    await uvicorn.Server(config).serve()


# --- picows ------------------------------------------------------------------------------


async def serve_picows(port: int) -> None:
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server

    rooms: dict[str, set[WSTransport]] = {}

    class Relay(WSListener):  # type: ignore[misc]
        def __init__(self, path: str) -> None:
            self.room = rooms.setdefault(path, set())

        def on_ws_connected(self, transport: WSTransport) -> None:
            self.room.add(transport)

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            kind = frame.msg_type
            if kind == WSMsgType.BINARY:
                data = frame.get_payload_as_bytes()
                if is_step1(data):
                    transport.send(WSMsgType.BINARY, EMPTY_STEP2)
                    return
                for other in self.room:
                    if other is not transport:
                        other.send(WSMsgType.BINARY, data)
            elif kind == WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code())
                transport.disconnect()

        def on_ws_disconnected(self, transport: WSTransport) -> None:
            self.room.discard(transport)

    server = await ws_create_server(lambda request: Relay(request.path), "127.0.0.1", port)
    await server.serve_forever()


# --- granian RSGI ------------------------------------------------------------------------


class RsgiRelay:
    """The RSGI app (``granian --interface rsgi bench.transport_floor:app``)."""

    def __init__(self) -> None:
        self.rooms: dict[str, set[Any]] = {}

    async def __rsgi__(self, scope: Any, proto: Any) -> None:
        if scope.proto != "ws":
            proto.response_empty(404, [])
            return
        transport = await proto.accept()
        room = self.rooms.setdefault(scope.path, set())
        room.add(transport)
        try:
            while True:
                message = await transport.receive()
                if message.kind == 0:  # close
                    break
                data = message.data
                if not isinstance(data, bytes):
                    continue
                if is_step1(data):
                    await transport.send_bytes(EMPTY_STEP2)
                    continue
                for other in list(room):
                    if other is not transport:
                        try:
                            await other.send_bytes(data)
                        except Exception:  # that peer is gone; its own loop removes it
                            pass
        finally:
            room.discard(transport)
            proto.close(None)


app = RsgiRelay()


def main() -> None:
    transport, port = sys.argv[1], int(sys.argv[2])
    import uvloop

    if transport == "picows":
        uvloop.run(serve_picows(port))
    elif transport in ("uvicorn-direct", "uvicorn-asgi"):
        uvloop.run(serve_uvicorn(port, transport == "uvicorn-direct"))
    else:
        raise SystemExit(f"unknown transport {transport!r}")


if __name__ == "__main__":
    main()
