"""The servers under test: ours (persistence on, single or 2 processes over Redis) and the peers.

Every server process is pinned to core 0 (with its PostgreSQL and Redis); the load generator
runs on core 1. Each target is started fresh for each scenario.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from procs import (
    Group,
    Pinned,
    children,
    family,
    free_port,
    pin,
    wait_answer,
    wait_http_ok,
    wait_tcp,
)

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from server.cluster import redis_binary  # noqa: E402

SERVER_CORE = 0
# PostgreSQL shares the server's core (its work is part of serving). BENCH_DB_CORE=1 moves
# it to the load generator's core, for profiles only: a sampler counts a server preempted
# by a backend it just woke as busy, which charges PostgreSQL's work to the server's stacks.
DB_CORE = int(os.environ.get("BENCH_DB_CORE", SERVER_CORE))
JWT_SECRET = "bench-secret-0123456789-0123456789-0123456789"

INSERT_FILES = """
insert into public.files (project_id, path, name, type, content, size_bytes, created_by, updated_by)
select $1, 'bench/' || n, n, 'file', '', 0, $2, $2 from unnest($3::text[]) as n
returning id
"""


class Database:
    """A fresh migrated database with one user/workspace/project; files made on demand."""

    def __init__(self, work: Path) -> None:
        from persistence.db import dsn_with_database

        self._handle: Any = None
        self.postmaster_pid: int | None = None
        admin = os.environ.get("DATABASE_URL")
        if not admin:
            from persistence.embedded import start_embedded_postgres

            data = work / "pg"
            dsn, self._handle = start_embedded_postgres(data, cleanup="delete")
            admin = dsn_with_database(dsn, "postgres")
            pid_file = data / "postmaster.pid"
            if pid_file.exists():
                self.postmaster_pid = int(pid_file.read_text().split()[0])
                pin([self.postmaster_pid, *children(self.postmaster_pid)], DB_CORE)
        self.admin = admin
        self.name = f"icreate_bench_{uuid.uuid4().hex[:8]}"
        self.dsn = dsn_with_database(admin, self.name)
        self.user_id, self.project_id = asyncio.run(self._create())

    async def _create(self) -> tuple[uuid.UUID, uuid.UUID]:
        import asyncpg

        from persistence.migrate import migrate_dsn
        from tests.support import factories

        conn = await asyncpg.connect(self.admin)
        try:
            await conn.execute(f'create database "{self.name}"')
        finally:
            await conn.close()
        await migrate_dsn(self.dsn)
        conn = await asyncpg.connect(self.dsn)
        try:
            user = await factories.create_user(conn, "bench@example.test", full_name="Bench")
            workspace = await factories.create_workspace(conn, user)
            project = await factories.create_project(conn, workspace)
        finally:
            await conn.close()
        return user, project

    def files(self, count: int) -> list[str]:
        async def create() -> list[str]:
            import asyncpg

            conn = await asyncpg.connect(self.dsn)
            try:
                names = [uuid.uuid4().hex for _ in range(count)]
                rows = await conn.fetch(INSERT_FILES, self.project_id, self.user_id, names)
            finally:
                await conn.close()
            return [str(row["id"]) for row in rows]

        return asyncio.run(create())

    def db_pids(self) -> list[int]:
        if self.postmaster_pid is None:
            return []
        return [self.postmaster_pid, *children(self.postmaster_pid)]

    def token(self) -> str:
        from server.auth.tokens import issue_access_token

        return issue_access_token(JWT_SECRET, str(self.user_id), "bench@example.test", ttl_s=86400)

    def close(self) -> None:
        async def drop() -> None:
            import asyncpg

            conn = await asyncpg.connect(self.admin)
            try:
                await conn.execute(f'drop database if exists "{self.name}" with (force)')
            finally:
                await conn.close()

        asyncio.run(drop())
        if self._handle is not None:
            self._handle.cleanup()


@dataclass
class Running:
    """A started target: what the load generator needs and what run.py measures."""

    target: dict[str, Any]
    groups: list[Group]
    procs: list[Pinned]
    make_docs: Callable[[int], list[str]]
    # SIGTERM every server process, start it again on the same port, wait until it serves:
    # {"stop_s": SIGTERM to exited, "start_s": started to ready} (scenario "storm").
    restart: Callable[[], dict[str, float]] | None = None
    metrics_urls: list[str] = field(default_factory=list)  # ours: GET /metrics per process

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


@dataclass
class Target:
    name: str
    label: str
    kind: str  # "ours" | "yws" | "hocuspocus" | "pycrdt" | "floor"
    processes: int = 1
    redis: bool = False
    options: dict[str, str] = field(default_factory=dict)

    @property
    def is_peer(self) -> bool:
        return self.kind != "ours"


class Launcher:
    """Starts targets; owns the shared database and the log directory."""

    def __init__(self, work: Path, logs: Path) -> None:
        self.work = work
        self.logs = logs
        self._db: Database | None = None

    @property
    def db(self) -> Database:
        if self._db is None:
            self._db = Database(self.work)
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()

    def start(self, target: Target, scenario: str) -> Running:
        procs: list[Pinned] = []
        try:
            return self._start(target, scenario, procs)
        except BaseException:
            for proc in reversed(procs):
                proc.stop()
            raise

    def _log(self, target: Target, scenario: str, part: str) -> Path:
        return self.logs / f"{target.name}-{scenario}-{part}.log"

    def _start(self, target: Target, scenario: str, procs: list[Pinned]) -> Running:
        redis_url: str | None = None
        groups: list[Group] = []
        if target.redis:
            port = free_port()
            redis = Pinned(
                "redis",
                [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no"],
                SERVER_CORE,
                self._log(target, scenario, "redis"),
            ).start()
            procs.append(redis)
            wait_tcp(port, 10, redis.proc)
            redis_url = f"redis://127.0.0.1:{port}/0"
            redis_pid = redis.pid
            groups.append(Group("redis", lambda: [redis_pid]))
        servers: list[Pinned] = []
        prefix = f"bench{uuid.uuid4().hex[:6]}:"  # shared by the processes of this target
        urls: list[str] = []
        params: dict[str, str] = {}
        for index in range(target.processes):
            port = free_port()
            # Issue 21: document sockets through the picows listener on a port of its own.
            ws_port = free_port() if target.options.get("DOC_PICOWS_PORT") == "free" else port
            extra = {"DOC_PICOWS_PORT": str(ws_port)} if ws_port != port else {}
            proc = self._server(target, scenario, index, port, redis_url, prefix, extra)
            procs.append(proc.start())
            servers.append(proc)
            if target.kind == "ours":
                wait_http_ok(f"http://127.0.0.1:{port}/healthz", 90, proc.proc)
                wait_tcp(ws_port, 30, proc.proc)
                urls.append(f"ws://127.0.0.1:{ws_port}/ws/docs")
            else:
                wait_tcp(port, 30, proc.proc)
                urls.append(f"ws://127.0.0.1:{port}")
        if target.kind == "floor":  # a granian worker is a child of the process started
            groups.insert(0, Group("server", lambda: [q for p in servers for q in family(p.pid)]))
        else:
            groups.insert(0, Group("server", lambda: [p.pid for p in servers]))
        ports = [int(url.rsplit(":", 1)[1].split("/")[0]) for url in urls]
        make_docs: Callable[[int], list[str]]
        if target.kind == "ours":
            db = self.db
            params["token"] = db.token()
            if db.postmaster_pid is not None:
                pin(db.db_pids(), DB_CORE)
                groups.append(Group("db", db.db_pids))
            make_docs = db.files
        else:
            make_docs = lambda n: [uuid.uuid4().hex for _ in range(n)]  # noqa: E731
        protocol = "hocuspocus" if target.kind == "hocuspocus" else "y-websocket"
        spec = {"protocol": protocol, "urls": urls, "params": params}
        metrics = [f"http://127.0.0.1:{port}/metrics" for port in ports]
        return Running(spec, groups, procs, make_docs, lambda: restart(servers, ports),
                       metrics if target.kind == "ours" else [])

    def _server(
        self,
        target: Target,
        scenario: str,
        index: int,
        port: int,
        redis_url: str | None,
        prefix: str,
        extra: dict[str, str] | None = None,
    ) -> Pinned:
        log = self._log(target, scenario, f"server{index}")
        base_env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
        if target.kind == "yws":
            env = {**base_env, "HOST": "127.0.0.1", "PORT": str(port)}
            cmd = ["node", "node_modules/@y/websocket-server/src/server.js"]
            return Pinned(target.name, cmd, SERVER_CORE, log, env, BENCH)
        if target.kind == "hocuspocus":
            env = {**base_env, "PORT": str(port)}
            if redis_url:
                env["REDIS_URL"] = redis_url
            cmd = ["node", "peers/hocuspocus.mjs"]
            return Pinned(target.name, cmd, SERVER_CORE, log, env, BENCH)
        if target.kind == "floor":
            return self._floor(target, log, port, base_env)
        if target.kind == "pycrdt":
            cmd = [sys.executable, "peers/pycrdt_websocket_server.py", str(port)]
            if target.options.get("deflate") == "off":
                cmd.append("--no-deflate")
            return Pinned(target.name, cmd, SERVER_CORE, log, base_env, BENCH)
        data_dir = Path(tempfile.mkdtemp(prefix=f"{target.name}-", dir=self.work))
        env = {
            **base_env,
            "DATABASE_URL": self.db.dsn,
            "JWT_SECRET": JWT_SECRET,
            "DATA_DIR": str(data_dir),
            "AI_EMBEDDED": "0",
            "LOG_LEVEL": "warning",
            "INSTANCE_ID": f"bench{index}",
            **target.options,
            **(extra or {}),
        }
        if redis_url:
            env["REDIS_URL"] = redis_url
            env["REDIS_PREFIX"] = prefix
        # BENCH_SOURCE: run another checkout of ours (a git worktree of main, for a
        # before/after in one run); its modules come first on the path.
        source = Path(target.options.get("BENCH_SOURCE", str(REPO)))
        if source != REPO:
            env["PYTHONPATH"] = str(source)
        cmd = [sys.executable, "-m", "server", "serve", "--port", str(port)]
        return Pinned(target.name, cmd, SERVER_CORE, log, env, source, ready_path="/healthz")


    def _floor(self, target: Target, log: Path, port: int, env: dict[str, str]) -> Pinned:
        """Issue 21's bare relay on one transport (bench/transport_floor.py)."""
        transport = target.options["transport"]
        env = {**env, "PYTHONPATH": str(REPO)}
        if transport == "granian":
            cmd = [sys.executable, "-m", "granian", "--interface", "rsgi", "--host", "127.0.0.1",
                   "--port", str(port), "--workers", "1", "--runtime-threads", "1",
                   "--loop", "uvloop", "--no-log", "--backlog", "2048",
                   "bench.transport_floor:app"]
        else:
            cmd = [sys.executable, "bench/transport_floor.py", transport, str(port)]
        return Pinned(target.name, cmd, SERVER_CORE, log, env, REPO)


def restart(servers: list[Pinned], ports: list[int]) -> dict[str, float]:
    """Stop (SIGTERM, up to 60 s of graceful shutdown) and start again on the same ports;
    ready = the port accepts (Node listens only once its startup is done), and for ours
    /healthz answers (ours listens before its startup: server/listen.py)."""
    started = time.monotonic()
    for proc in servers:
        proc.stop(60)
    stopped = time.monotonic()
    for proc in servers:
        proc.start()
    for proc, port in zip(servers, ports, strict=True):
        wait_tcp(port, 90, proc.proc, interval_s=0.005)
        if proc.ready_path is not None:
            wait_answer(f"http://127.0.0.1:{port}{proc.ready_path}", 90, proc.proc)
    return {"stop_s": stopped - started, "start_s": time.monotonic() - stopped}


PEERS = [
    Target("yws", "@y/websocket-server", "yws"),
    Target("hocuspocus", "@hocuspocus/server", "hocuspocus"),
    Target("pycrdt", "pycrdt-websocket (deflate)", "pycrdt"),
]
PEERS_FULL_EXTRA = [
    Target(
        "pycrdt-nodeflate", "pycrdt-websocket (no deflate)", "pycrdt", options={"deflate": "off"}
    ),
]
OURS = Target("ours", "ours (persistence on)", "ours")
# Issue 21: the bare relay on each transport, and ours through picows; run only when
# named in --targets.
TRANSPORTS = [
    Target("ours-picows", "ours through picows (persistence on)", "ours",
           options={"DOC_PICOWS_PORT": "free"}),
    Target("floor-uvicorn", "bare relay, uvicorn direct channel", "floor",
           options={"transport": "uvicorn-direct"}),
    Target("floor-uvicorn-asgi", "bare relay, uvicorn ASGI", "floor",
           options={"transport": "uvicorn-asgi"}),
    Target("floor-picows", "bare relay, picows", "floor", options={"transport": "picows"}),
    Target("floor-granian", "bare relay, granian RSGI", "floor",
           options={"transport": "granian"}),
]
CLUSTER = [
    Target("ours-x2", "ours ×2 + Redis", "ours", processes=2, redis=True),
    Target("hocuspocus-x2", "Hocuspocus ×2 + Redis", "hocuspocus", processes=2, redis=True),
]
# Issue 21's cluster comparison (bench/cluster3.py): three processes, one Redis.
CLUSTER3 = [
    Target("ours-x3", "ours ×3 + Redis", "ours", processes=3, redis=True),
    Target("hocuspocus-x3", "Hocuspocus ×3 + Redis", "hocuspocus", processes=3, redis=True),
]
