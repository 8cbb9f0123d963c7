"""``python -m server.cluster``: Redis of its own, N nodes, a round-robin proxy, clean stop."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import aiohttp

from tests.cluster.command import start_cluster_command, wait_cluster_ready
from tests.cluster.ports import consecutive_free_ports


async def test_cluster_command_serves_two_nodes_behind_one_port_and_stops_on_ctrl_c(
    database_url: str, tmp_path: Path
) -> None:
    base = consecutive_free_ports(4)  # proxy, node 1, node 2, redis
    log_path = tmp_path / "cluster.log"
    proc = start_cluster_command(base, database_url, tmp_path / "data", log_path)
    try:
        await wait_cluster_ready(base, log_path)
        seen: set[str] = set()
        kinds: set[str] = set()
        # a new TCP connection per request: the proxy balances connections
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            for _ in range(6):
                async with session.get(f"http://127.0.0.1:{base}/healthz") as resp:
                    body = await resp.json()
                    assert resp.status == 200, body
                seen.add(body["broker"]["instance_id"])
                kinds.add(body["broker"]["kind"])
                assert body["broker"]["healthy"] is True
        assert len(seen) == 2, "the proxy alternates between the two nodes"
        assert kinds == {"RedisBroker"}
        # The nodes see each client's own address, whatever X-Forwarded-For it sends.
        connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
        async with aiohttp.ClientSession(connector=connector) as session:
            api = f"http://127.0.0.1:{base}/api/v1"
            async with session.post(
                f"{api}/auth/signup", json={"email": "c@example.test", "password": "x" * 12},
                headers={"X-Forwarded-For": "203.0.113.9"},
            ) as resp:
                token = (await resp.json())["access_token"]
            async with session.get(
                f"{api}/me/sessions", headers={"Authorization": f"Bearer {token}"}
            ) as resp:
                assert [s["ip_address"] for s in (await resp.json())["items"]] == ["127.0.0.2"]
        assert "cluster ready" in log_path.read_text()

        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
        started = time.monotonic()
        code = await asyncio.to_thread(proc.wait, 40)
        assert code == 0, log_path.read_text()
        assert time.monotonic() - started < 30
        for port in (base + 1, base + 2, base + 3):
            try:
                _r, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                continue
            writer.close()
            raise AssertionError(f"port {port} still served after the cluster stopped")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
