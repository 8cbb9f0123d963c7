"""Shared by the observability tests: waiting for rows the app writes in the background."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import asyncpg

from persistence.db import Database
from server.settings import Settings

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]], ok: Callable[[T], bool], timeout_s: float = 15.0,
    what: str = "condition",
) -> T:
    """Poll ``probe`` until ``ok`` holds for its result (every 50 ms), or fail."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await probe()
        if ok(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached within {timeout_s}s; last: {value!r}")
        await asyncio.sleep(0.05)


async def rows(db: Database, query: str, *args: Any) -> list[asyncpg.Record]:
    async with db.acquire() as conn:
        return list(await conn.fetch(query, *args))


def observed(settings: Settings, **changes: Any) -> Settings:
    """``settings`` with quick api_logs flushes (and any other observability changes)."""
    config = dataclasses.replace(
        settings.observability, api_log_flush_s=0.05, **changes
    )
    return dataclasses.replace(settings, observability=config)
