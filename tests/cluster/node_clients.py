"""Drive tests/node/cluster_clients.mjs: many stock y-websocket clients in one Node process."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from pathlib import Path
from typing import Any

NODE_DIR = Path(__file__).resolve().parents[1] / "node"


class NodeClients:
    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None
        self.events: list[dict[str, Any]] = []
        self._waiters: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ids = itertools.count(1)
        self._reader: asyncio.Task[None] | None = None
        self.stderr: list[str] = []

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            "node", str(NODE_DIR / "cluster_clients.mjs"),
            cwd=NODE_DIR,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            limit=16 * 1024 * 1024,
        )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc and self.proc.stdout
        while line := await self.proc.stdout.readline():
            body = json.loads(line)
            if "re" in body:
                fut = self._waiters.pop(body["re"], None)
                if fut is not None and not fut.done():
                    fut.set_result(body)
            else:
                self.events.append(body)
        for fut in self._waiters.values():
            if not fut.done():
                fut.set_exception(RuntimeError("node clients exited"))

    async def call(self, cmd: str, timeout_s: float = 30.0, **args: Any) -> dict[str, Any]:
        assert self.proc and self.proc.stdin
        re = next(self._ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiters[re] = fut
        self.proc.stdin.write((json.dumps({"cmd": cmd, "re": re, **args}) + "\n").encode())
        await self.proc.stdin.drain()
        body = await asyncio.wait_for(fut, timeout_s)
        if not body.get("ok"):
            raise RuntimeError(f"node command {cmd} failed: {body.get('error')}")
        return body

    async def open(self, client_id: str, url: str, room: str, token: str) -> None:
        await self.call("open", id=client_id, url=url, room=room, token=token)

    async def texts(self) -> dict[str, str]:
        texts: dict[str, str] = (await self.call("texts"))["texts"]
        return texts

    async def status(self) -> dict[str, dict[str, Any]]:
        status: dict[str, dict[str, Any]] = (await self.call("status"))["status"]
        return status

    async def converged(self, timeout_s: float) -> str:
        """Wait until every client is connected, synced and holds the same text."""
        deadline = time.monotonic() + timeout_s
        texts: dict[str, str] = {}
        status: dict[str, dict[str, Any]] = {}
        while time.monotonic() < deadline:
            texts = await self.texts()
            status = await self.status()
            ready = all(s["connected"] and s["synced"] for s in status.values())
            if ready and len(set(texts.values())) == 1:
                return next(iter(texts.values()))
            await asyncio.sleep(0.05)
        lengths = {k: len(v) for k, v in texts.items()}
        raise AssertionError(f"clients did not converge: lengths={lengths} status={status}")

    async def close(self) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(Exception):
            await self.call("exit", timeout_s=5)
        try:
            await asyncio.wait_for(self.proc.wait(), 5)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
