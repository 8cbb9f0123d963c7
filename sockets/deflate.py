"""permessage-deflate (RFC 7692) for the large messages only, with no zlib state per socket.

Why: a large document's initial sync is megabytes of mostly text that compresses several
times over, while a keystroke's frame is a few dozen bytes that compression only slows
down. RFC 7692 lets an endpoint send any message uncompressed (RSV1 clear) on a deflate
connection, so the extension is negotiated for stock clients (browsers, Node ``ws``), and
only messages of at least ``min_bytes`` are compressed.

Memory: ``server_no_context_takeover`` and ``client_no_context_takeover`` are always
negotiated, so neither side keeps a compressor or decompressor between messages; an idle
socket holds no zlib context (websockets creates one per compressed message and drops it).

Two senders: websockets' own encoder for frames sent through ASGI ``send`` (the
``LargeMessageDeflate`` extension below), and ``deflate_message`` for the document path,
which compresses a shared payload once (off the event loop) and writes it to many sockets
(collab/full_sync.py).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

from websockets.extensions.permessage_deflate import (
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
)
from websockets.frames import CONT, CTRL_OPCODES, Frame
from websockets.typing import ExtensionParameter

# Messages smaller than this go out raw (Node ws's own default threshold is 1 KiB; ours is
# higher: below it the wire saving does not pay for the CPU of the hot path).
DEFAULT_MIN_BYTES = 64 * 1024
_SYNC_FLUSH_TAIL = b"\x00\x00\xff\xff"


class LargeMessageDeflate(PerMessageDeflate):
    """websockets' extension, except that a message below ``min_bytes`` is sent raw."""

    min_bytes = DEFAULT_MIN_BYTES

    def encode(self, frame: Frame) -> Frame:
        # Only whole messages are compressed: a fragmented one goes out raw, all of it.
        if (frame.opcode in CTRL_OPCODES or frame.opcode is CONT or not frame.fin
                or len(frame.data) < self.min_bytes):
            return frame
        return super().encode(frame)


class LargeMessageDeflateFactory(ServerPerMessageDeflateFactory):
    """Accepts a client's permessage-deflate offer with no context takeover either way."""

    def __init__(self, min_bytes: int = DEFAULT_MIN_BYTES) -> None:
        super().__init__(server_no_context_takeover=True, client_no_context_takeover=True)
        self.min_bytes = min_bytes

    def process_request_params(
        self, params: Sequence[ExtensionParameter], accepted_extensions: Sequence[Any],
    ) -> tuple[list[ExtensionParameter], PerMessageDeflate]:
        response, negotiated = super().process_request_params(params, accepted_extensions)
        extension = LargeMessageDeflate(
            remote_no_context_takeover=negotiated.remote_no_context_takeover,
            local_no_context_takeover=negotiated.local_no_context_takeover,
            remote_max_window_bits=negotiated.remote_max_window_bits,
            local_max_window_bits=negotiated.local_max_window_bits,
        )
        extension.min_bytes = self.min_bytes
        return response, extension


def negotiated_bits(extensions: Sequence[Any]) -> int | None:
    """The window bits this server may compress with, if permessage-deflate was agreed."""
    for extension in extensions:
        if isinstance(extension, PerMessageDeflate):
            return extension.local_max_window_bits
    return None


def deflate_message(data: bytes, bits: int, level: int = 6) -> bytes:
    """One message's payload compressed on its own (RFC 7692 7.2.1: no sync-flush tail).

    Blocking for megabytes: run it in a thread (zlib releases the GIL while it works).
    """
    compressor = zlib.compressobj(level, zlib.DEFLATED, -bits)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(_SYNC_FLUSH_TAIL)
    return out[:-4]
