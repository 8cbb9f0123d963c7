"""The receiving side of one accepted socket: one loop for every socket kind.

Messages come as ``str`` (text frames) or ``bytes`` until the client goes away or the
socket is closed; the size limit is the transport's (``WS_MAX_MESSAGE_BYTES``, close 4413,
server/ws_transport.py), so nothing here re-checks it. The document socket goes further
once synced: it detaches from its ASGI coroutine and gets frames in the transport's
callback (server/ws/docs.py), after draining this loop's queue in order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

Receive = Callable[[], Awaitable[Mapping[str, Any]]]


async def messages(receive: Receive) -> AsyncIterator[str | bytes]:
    """Every data message of an accepted socket, in order, until it is gone."""
    while True:
        try:
            message = await receive()
        except (RuntimeError, OSError):  # Starlette: receive after a disconnect
            return
        kind = message["type"]
        if kind == "websocket.disconnect":
            return
        if kind == "websocket.receive":
            text = message.get("text")
            if text is not None:
                yield str(text)
            else:
                data = message.get("bytes")
                yield bytes(data) if data is not None else b""
