"""A large document's full state for fresh joiners: encoded once, compressed once, shared.

Why: a fresh client's Step1 (an empty state vector) asks for the whole document. For a
document of megabytes, encoding it per joiner costs CPU on the event loop and one copy per
joiner in memory, and sending it raw costs the wire. Here a room keeps at most one shared
``Encoding``: the Step2 message of the full state at one version, plus, per permessage-deflate
window size, that message compressed once in a worker thread (sockets/deflate.py). Every
fresh joiner of that version gets the same bytes object; a joiner that came after
some edits gets the shared copy plus one small update frame with what changed since (the
room's diff against the encoding's state vector). A new encoding is made only once the
document has grown by more than a quarter of it since, and the encoding is dropped
``keep_s`` after its last use (one copy per loaded document, none for an idle one).

Order: the joiner is a room peer from ``join`` on, so every update applied after the
encoding's version is broadcast to it or is in the trailing diff; Yjs clients apply what
they receive in any order.

Small documents and clients that already hold state keep the plain per-peer diff (hub).
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from collab import protocol
from collab.room import Peer, Room
from sockets.deflate import deflate_message

log = logging.getLogger(__name__)

EMPTY_STATE_VECTOR = b"\x00"


class LargeFramePeer(Protocol):
    """What a peer offers beyond ``Peer`` for large frames (server/ws/docs.py)."""

    @property
    def deflate_bits(self) -> int | None: ...

    def send_large(self, data: bytes, deflated: bool = False) -> None: ...


@dataclass(eq=False)
class Encoding:
    """The full state's Step2 message at one version of a room, and its compressed forms."""

    version: int
    size: int  # room.size when encoded: how far the document has grown since
    state_vector: bytes
    message: bytes
    compressed: dict[int, asyncio.Future[bytes]] = field(default_factory=dict)
    used_at: float = 0.0


@dataclass
class FullSyncStats:
    encodings: int = 0
    compressions: int = 0
    shared_sends: int = 0
    deflated_sends: int = 0
    deflated_bytes: int = 0
    raw_bytes: int = 0


class FullSyncs:
    """The shared encodings of the loaded rooms (one at most per room), owned by the hub."""

    def __init__(self, min_bytes: int, keep_s: float, level: int) -> None:
        self.min_bytes = min_bytes
        self.keep_s = keep_s
        self.level = level
        self.stats = FullSyncStats()
        self._encodings: dict[Room, Encoding] = {}
        self._expiry: asyncio.TimerHandle | None = None
        # One thread: compressions of different documents queue rather than take both cores.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deflate")

    def stop(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        self._encodings.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def send(self, room: Room, peer: Peer, state_vector: bytes) -> bool:
        """Answer a fresh joiner of a large room; False: not for us (the hub diffs)."""
        if state_vector != EMPTY_STATE_VECTOR or room.size < self.min_bytes:
            return False
        encoding = self._current(room)
        encoding.used_at = time.monotonic()
        self.stats.shared_sends += 1
        bits: int | None = getattr(peer, "deflate_bits", None)
        if bits is None:
            self._deliver(room, peer, encoding, encoding.message, deflated=False)
            return True
        compressed = encoding.compressed.get(bits)
        if compressed is None:
            compressed = self._compress(encoding.message, bits)
            encoding.compressed[bits] = compressed
        if compressed.done() and not compressed.cancelled() and compressed.exception() is None:
            self._deliver(room, peer, encoding, compressed.result(), deflated=True)
        else:
            compressed.add_done_callback(
                lambda done: self._compressed(room, peer, encoding, done))
        return True

    def _current(self, room: Room) -> Encoding:
        """The room's shared encoding, made now if there is none or it is too far behind."""
        encoding = self._encodings.get(room)
        if encoding is not None and (
            encoding.version == room.version
            or 0 <= room.size - encoding.size <= len(encoding.message) // 4
        ):
            return encoding
        # On the loop: yrs encodes a 20 MB document in tens of milliseconds, and the
        # document must not change meanwhile (pycrdt's Doc stays on this thread).
        encoding = Encoding(
            version=room.version, size=room.size, state_vector=room.state_vector(),
            message=protocol.sync_step2(room.diff(EMPTY_STATE_VECTOR)),
        )
        self.stats.encodings += 1
        self._encodings[room] = encoding
        self._schedule_expiry()
        return encoding

    def _compress(self, message: bytes, bits: int) -> asyncio.Future[bytes]:
        self.stats.compressions += 1
        loop = asyncio.get_running_loop()
        return loop.run_in_executor(self._executor, deflate_message, message, bits, self.level)

    def _compressed(self, room: Room, peer: Peer, encoding: Encoding,
                    done: asyncio.Future[bytes]) -> None:
        if peer.closed:
            return
        if done.cancelled() or done.exception() is not None:
            if not done.cancelled():
                log.error("compressing the full state of %s failed", room.file_id,
                          exc_info=done.exception())
            # The raw message still syncs the client.
            self._deliver(room, peer, encoding, encoding.message, deflated=False)
            return
        self._deliver(room, peer, encoding, done.result(), deflated=True)

    def _deliver(self, room: Room, peer: Peer, encoding: Encoding, data: bytes,
                 deflated: bool) -> None:
        if peer.closed:
            return
        send_large = getattr(peer, "send_large", None)
        if send_large is None:
            peer.send(data)
        else:
            send_large(data, deflated)
        if deflated:
            self.stats.deflated_sends += 1
            self.stats.deflated_bytes += len(data)
        else:
            self.stats.raw_bytes += len(data)
        if encoding.version != room.version:
            # What changed since the shared version (deletions included).
            peer.send(protocol.sync_update(room.diff(encoding.state_vector)))

    def _schedule_expiry(self) -> None:
        if self._expiry is None:
            loop = asyncio.get_running_loop()
            self._expiry = loop.call_later(self.keep_s, self._expire)

    def _expire(self) -> None:
        """Drop the encodings not used for ``keep_s`` (and those of unloaded rooms)."""
        self._expiry = None
        cutoff = time.monotonic() - self.keep_s
        for room, encoding in list(self._encodings.items()):
            if encoding.used_at < cutoff and not _pending(encoding):
                del self._encodings[room]
        if self._encodings:
            self._schedule_expiry()

    def forget(self, room: Room) -> None:
        """The room is unloaded: its encoding goes with it."""
        self._encodings.pop(room, None)

    def held_bytes(self) -> int:
        """Bytes of shared encodings held (raw and compressed): the memory this costs."""
        total = 0
        for encoding in self._encodings.values():
            total += len(encoding.message)
            total += sum(_size(f) for f in encoding.compressed.values())
        return total


def _pending(encoding: Encoding) -> bool:
    return any(not f.done() for f in encoding.compressed.values())


def _size(future: asyncio.Future[Any]) -> int:
    if future.done() and not future.cancelled() and future.exception() is None:
        return len(future.result())
    return 0
