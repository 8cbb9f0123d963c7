"""Chat watchers: the listening clients of a conversation, and the frames they get.

Each event is encoded once (one JSON ``str``) and pushed to every watcher. A watcher with a
``FrameSink`` (a socket's outbox, sockets.outbox) has the frame written right away, inside
the hub's fan-out loop: no task, queue or wake-up per watcher per delta. Otherwise (the SSE
endpoint) frames wait in a bounded queue for the watcher's own writer, which merges a
backlog of deltas into one frame. Either way the backlog is bounded: past it the watcher is
closed rather than slowing everyone.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol


def encode(event: dict[str, Any]) -> str:
    return json.dumps(event, separators=(",", ":"), ensure_ascii=False)


def error_frame(code: str, message: str, **extra: Any) -> str:
    return encode({"type": "error", "code": code, "message": message, **extra})


@dataclass(frozen=True)
class Delta:
    """A queued ``delta`` frame, kept structured so a backlog can be merged."""

    message_id: str
    seq: int
    text: str
    frame: str


QueueItem = str | Delta | None
MAX_BATCH = 256


def coalesce(items: list[str | Delta]) -> list[str]:
    """Frames to send: runs of deltas of one message become one delta (text joined, the
    last seq), so a client that fell behind catches up in one frame instead of many."""
    frames: list[str] = []
    run: list[Delta] = []

    def flush() -> None:
        if len(run) == 1:
            frames.append(run[0].frame)
        elif run:
            frames.append(encode({
                "type": "delta", "message_id": run[0].message_id, "seq": run[-1].seq,
                "text": "".join(d.text for d in run),
            }))
        run.clear()

    for item in items:
        if isinstance(item, Delta):
            if run and run[0].message_id != item.message_id:
                flush()
            run.append(item)
        else:
            flush()
            frames.append(item)
    flush()
    return frames


class FrameSink(Protocol):
    """Takes text frames synchronously (a socket's direct channel): its transport's buffer
    is the watcher's queue, ``buffered`` its length in bytes."""

    @property
    def buffered(self) -> int: ...

    def send_text(self, text: str) -> None: ...


class Watcher:
    """One listening client: frames go straight to its ``sink``, or queue up here for its
    own writer. Either way the backlog is bounded: past it the watcher is closed
    (``overflowed``, and ``on_overflow`` runs) rather than slowing everyone."""

    def __init__(
        self,
        maxsize: int = 4096,
        *,
        sink: FrameSink | None = None,
        sink_max_buffered: int = 1 << 20,
        on_overflow: Callable[[], None] | None = None,
    ) -> None:
        self.queue: asyncio.Queue[QueueItem] = asyncio.Queue(maxsize)
        self.overflowed = False
        self.closed = False
        self._ended = False
        self.sink = sink
        self.sink_max_buffered = sink_max_buffered
        self.on_overflow = on_overflow

    def push(self, frame: str | Delta) -> None:
        if self.closed:
            return
        sink = self.sink
        if sink is not None:
            if sink.buffered > self.sink_max_buffered:
                self._overflow()
            else:
                sink.send_text(frame if isinstance(frame, str) else frame.frame)
            return
        try:
            self.queue.put_nowait(frame)
        except asyncio.QueueFull:
            self._overflow()

    def _overflow(self) -> None:
        # A client that cannot keep up is dropped rather than slowing everyone.
        self.overflowed = True
        self.close()
        if self.on_overflow is not None:
            self.on_overflow()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)

    async def get_frames(self) -> list[str] | None:
        """Every frame queued so far (at least one, deltas merged), or None once closed."""
        if self._ended:
            return None
        item = await self.queue.get()
        if item is None:
            self._ended = True
            return None
        items: list[str | Delta] = [item]
        while len(items) < MAX_BATCH and not self.queue.empty():
            more = self.queue.get_nowait()
            if more is None:
                self._ended = True
                break
            items.append(more)
        return coalesce(items)


@dataclass
class Stream:
    """The visible state of a reply: its message (placeholder) and the text so far."""

    message: dict[str, Any]
    parts: list[str] = field(default_factory=list)
    seq: int = 0

    @property
    def message_id(self) -> str:
        return str(self.message["id"])

    def catch_up(self) -> list[str]:
        frames = [encode({"type": "message_created", "message": self.message})]
        if self.parts:
            frames.append(encode({
                "type": "delta", "message_id": self.message_id, "seq": self.seq,
                "text": "".join(self.parts), "catch_up": True,
            }))
        return frames
