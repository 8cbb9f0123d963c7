"""Drive a stock Node Yjs client (tests/node/agent.mjs) from a test, one JSON line per command."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

NODE_DIR = Path(__file__).resolve().parents[1] / "node"


def node_ready() -> bool:
    return shutil.which("node") is not None and (NODE_DIR / "node_modules" / "yjs").exists()


class NodeAgent:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.events: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._replies: dict[int, asyncio.Future[Any]] = {}
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, ws_url: str, file_id: object, token: str) -> NodeAgent:
        proc = await asyncio.create_subprocess_exec(
            "node", str(NODE_DIR / "agent.mjs"), ws_url + "/ws/docs", str(file_id), token,
            cwd=NODE_DIR, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while True:
            line = await self.proc.stdout.readline()
            if not line:
                break
            message = json.loads(line)
            if "event" in message:
                self.events.append(message)
                continue
            future = self._replies.pop(message["id"], None)
            if future is not None and not future.done():
                if "error" in message:
                    future.set_exception(RuntimeError(message["error"]))
                else:
                    future.set_result(message["result"])
        for future in self._replies.values():
            if not future.done():
                future.set_exception(RuntimeError("node agent exited"))

    async def call(self, op: str, **args: Any) -> Any:
        assert self.proc.stdin is not None
        command_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._replies[command_id] = future
        self.proc.stdin.write((json.dumps({"id": command_id, "op": op, **args}) + "\n").encode())
        await self.proc.stdin.drain()
        return await asyncio.wait_for(future, 10)

    async def text(self) -> str:
        result: str = await self.call("text")
        return result

    def close_codes(self) -> list[int]:
        return [e["code"] for e in self.events if e["event"] == "close"]

    async def wait_synced(self, timeout: float = 30) -> None:
        await wait_for(lambda: any(e["event"] == "synced" for e in self.events), timeout)

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.call("exit"), 2)
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        await self.proc.wait()
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


async def wait_for(check: Callable[[], bool], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def wait_until(check: Callable[[], Any], timeout: float = 20) -> None:
    """Like ``wait_for`` for an async check."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)
