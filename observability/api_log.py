"""api_logs writer: a bounded in-memory buffer and one owned task that COPYs it in batches.

The request path only appends a tuple (``append``, no await); the flusher writes when a batch
is full or every ``flush_s``, whichever comes first, with ``copy_records_to_table`` into the
partitioned parent. Bounds: at most ``capacity`` rows wait in memory; past that, new rows are
dropped and counted (``icreate_api_logs_dropped_total{reason="buffer_full"}`` in
``/metrics``), so a slow or absent database costs memory up to the bound and never latency.
A batch the database refuses is dropped and counted (``reason="write_failed"``). On stop, what
is buffered is written once more (bounded by ``stop_timeout_s``); a killed process loses at
most ``flush_s`` of rows plus one batch in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
import uuid
from datetime import UTC, datetime

from prometheus_client import Counter

from persistence.db import Database
from persistence.observability import ApiLogRecord, copy_api_logs

log = logging.getLogger(__name__)

WRITTEN = Counter("icreate_api_logs_written_total", "api_logs rows written")
DROPPED = Counter(
    "icreate_api_logs_dropped_total", "api_logs rows not written", ["reason"]
)
DROPPED_FULL = DROPPED.labels("buffer_full")
DROPPED_FAILED = DROPPED.labels("write_failed")
DROPPED_FULL.inc(0)
DROPPED_FAILED.inc(0)

# What the request path appends: (started_at epoch s, user_id, workspace_id, endpoint, method,
# status, duration_ms, client ip, user agent, request bytes, response bytes). Converted to
# database types by the flusher, off the request path.
RawEntry = tuple[
    float, str | None, uuid.UUID | None, str, str, int, int, str | None, str | None,
    int | None, int | None,
]

MAX_USER_AGENT = 512


class Parsed:
    """Client addresses and user ids checked once each: parsing an address costs ~8 µs,
    and the same few addresses and users come back request after request. Bounded: a full
    memo starts over."""

    LIMIT = 4096

    def __init__(self) -> None:
        self.ips: dict[str, str | None] = {}
        self.users: dict[str, uuid.UUID | None] = {}

    def ip(self, value: str | None) -> str | None:
        if not value:
            return None
        try:
            return self.ips[value]
        except KeyError:
            pass
        try:
            parsed: str | None = str(ipaddress.ip_address(value))
        except ValueError:
            parsed = None  # a unix socket path or a test client's name
        if len(self.ips) >= self.LIMIT:
            self.ips.clear()
        self.ips[value] = parsed
        return parsed

    def user(self, value: str | None) -> uuid.UUID | None:
        if value is None:
            return None
        try:
            return self.users[value]
        except KeyError:
            pass
        try:
            parsed: uuid.UUID | None = uuid.UUID(value)
        except ValueError:
            parsed = None
        if len(self.users) >= self.LIMIT:
            self.users.clear()
        self.users[value] = parsed
        return parsed

    def record(self, entry: RawEntry) -> ApiLogRecord:
        started, user, workspace, endpoint, method, status, duration, ip, agent, req, resp = entry
        return (
            datetime.fromtimestamp(started, UTC), self.user(user), workspace, endpoint, method,
            status, duration, self.ip(ip), agent[:MAX_USER_AGENT] if agent else None, req, resp,
        )


class ApiLogWriter:
    def __init__(
        self, db: Database, *, capacity: int, batch: int, flush_s: float,
        stop_timeout_s: float = 5.0,
    ) -> None:
        self.db = db
        self.capacity = capacity
        self.batch = batch
        self.flush_s = flush_s
        self.stop_timeout_s = stop_timeout_s
        self._buffer: list[RawEntry] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._parsed = Parsed()

    def append(self, entry: RawEntry) -> None:
        buffer = self._buffer
        if len(buffer) >= self.capacity:
            DROPPED_FULL.inc()
            return
        buffer.append(entry)
        if len(buffer) >= self.batch:
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="api-log-writer")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        # The last rows, written once; a database that does not answer in time loses them.
        try:
            async with asyncio.timeout(self.stop_timeout_s):
                while self._buffer:
                    await self._flush()
        except TimeoutError:
            DROPPED_FAILED.inc(len(self._buffer))
            log.warning("api_logs: %d rows not written at shutdown", len(self._buffer))
            self._buffer = []

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.flush_s):
                    await self._wake.wait()
            self._wake.clear()
            while self._buffer:
                await self._flush()
                if len(self._buffer) < self.batch:
                    break

    async def _flush(self) -> None:
        if len(self._buffer) <= self.batch:
            taken, self._buffer = self._buffer, []
        else:
            taken = self._buffer[: self.batch]
            del self._buffer[: self.batch]
        if not taken:
            return
        started = time.monotonic()
        try:
            records = [self._parsed.record(entry) for entry in taken]
            async with self.db.acquire() as conn:
                await copy_api_logs(conn, records)
        except asyncio.CancelledError:
            # Stopped while writing: keep the batch for the final flush (at the front).
            self._buffer[:0] = taken
            raise
        except Exception:
            DROPPED_FAILED.inc(len(taken))
            log.warning("api_logs: a batch of %d rows was not written", len(taken), exc_info=True)
            return
        WRITTEN.inc(len(taken))
        log.debug("api_logs: %d rows in %.1f ms", len(taken), (time.monotonic() - started) * 1e3)
