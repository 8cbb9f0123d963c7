"""The process's parts stop in one place: last started first, and one part failing to stop
(raising, or hanging past the timeout) does not keep the others running."""

from __future__ import annotations

import asyncio

import pytest

from server.lifecycle import Lifecycle, Stop


async def test_parts_stop_in_reverse_and_a_failing_stop_does_not_stop_the_rest(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stopped: list[str] = []
    parts = Lifecycle(stop_timeout_s=0.2)

    def stopper(name: str) -> Stop:
        async def stop() -> None:
            stopped.append(name)
        return stop

    async def broken() -> None:
        raise RuntimeError("cannot stop")

    async def hangs() -> None:
        await asyncio.sleep(10)

    async def nothing() -> None:
        return None

    parts.on_stop("database", lambda: stopped.append("database"))
    await parts.start("documents", nothing, stopper("documents"))
    await parts.start("chat", nothing, broken)
    await parts.start("terminals", nothing, hangs)
    await parts.start("jobs", nothing, stopper("jobs"))
    assert parts.names == ["database", "documents", "chat", "terminals", "jobs"]

    failed = await parts.stop_all()

    assert failed == ["terminals", "chat"]
    assert stopped == ["jobs", "documents", "database"]
    assert "stopping chat failed" in caplog.text
    assert parts.names == []


async def test_a_part_that_fails_to_start_is_not_stopped_but_the_earlier_ones_are() -> None:
    stopped: list[str] = []
    parts = Lifecycle()

    async def ok() -> None:
        return None

    async def fails() -> None:
        raise OSError("port in use")

    def stop(name: str) -> Stop:
        return lambda: stopped.append(name)

    await parts.start("broker", ok, stop("broker"))
    with pytest.raises(OSError):
        await parts.start("documents", fails, stop("documents"))
    assert await parts.stop_all() == []
    assert stopped == ["broker"]
