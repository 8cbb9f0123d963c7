"""``python -m server serve`` listens before its startup (server/listen.py): a client that
connects while the server imports and migrates waits in the accept queue and is served
once the app is ready, instead of being refused and backing off."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

from server.settings import Settings
from tests.support.net import free_port
from tests.support.servers import REPO, server_env

REQUEST = b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"


async def first_connection(port: int, proc: subprocess.Popen[bytes], timeout_s: float) -> tuple[
    asyncio.StreamReader, asyncio.StreamWriter
]:
    deadline = time.monotonic() + timeout_s
    while True:
        assert proc.poll() is None, "the server exited"
        try:
            return await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.005)


async def test_a_client_connecting_during_startup_is_served_once_ready(
    settings: Settings, tmp_path: Path
) -> None:
    port = free_port()
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "server", "serve", "--port", str(port)],
        cwd=REPO, env=server_env(settings), stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        reader, writer = await first_connection(port, proc, 30)
        connected = time.monotonic()
        writer.write(REQUEST)
        response = await asyncio.wait_for(reader.read(), 60)
        waited = time.monotonic() - connected
        writer.close()
        assert response.startswith(b"HTTP/1.1 200"), response[:200]
        # The port accepted before the app could answer (its imports alone take longer).
        assert waited > 0.2, f"answered {waited:.2f} s after the connection"
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
