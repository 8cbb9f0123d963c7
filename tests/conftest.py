"""Fixtures: a clean migrated database per test, Redis, settings, real servers."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest

from execution.config import ExecutionConfig
from persistence.db import Database
from server.settings import Settings
from storage.config import StorageConfig
from tests.support.databases import PostgresForTests, RedisForTests
from tests.support.servers import LiveServer, start_live_server

TEST_JWT_SECRET = "test-secret-0123456789-0123456789-0123456789"
TEST_ORIGIN = "http://testclient.local"


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresForTests]:
    pg = PostgresForTests()
    yield pg
    pg.close()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisForTests]:
    redis = RedisForTests()
    yield redis
    redis.close()


@pytest.fixture
async def database_url(postgres: PostgresForTests) -> AsyncIterator[str]:
    """A fresh database cloned from the migrated template, dropped afterwards."""
    dsn = await postgres.create_database()
    yield dsn
    await postgres.drop_database(dsn)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = await Database.connect(database_url, min_size=1, max_size=5)
    yield database
    await database.close()


@pytest.fixture
def redis_url(redis_server: RedisForTests) -> str:
    return redis_server.url


@pytest.fixture
def redis_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}:"


@pytest.fixture
def exec_root() -> Iterator[Path]:
    """A workdir root for sandboxed runs and terminals.

    pytest's tmp_path lives under a 0700 directory that the sandbox uid cannot traverse
    (bubblewrap binds the workdir as that uid), so the root is made here, mode 0711.
    """
    root = Path(tempfile.mkdtemp(prefix="icreate-exec-"))
    root.chmod(0o711)
    yield root
    # Project workdirs may be loop mounts (execution/volumes.py): the hubs unmount them
    # when they close; a test that failed half-way may leave some, never leak them.
    for mount in mounts_under(root):
        subprocess.run(["umount", "-l", str(mount)], check=False, capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


def mounts_under(root: Path) -> list[Path]:
    """Mount points below ``root``, deepest first (from /proc/self/mountinfo)."""
    found = []
    with open("/proc/self/mountinfo") as info:
        for line in info:
            point = Path(line.split()[4].replace("\\040", " "))
            if point.is_relative_to(root) and point != root:
                found.append(point)
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


@pytest.fixture
def settings(database_url: str, tmp_path: Path, redis_prefix: str, exec_root: Path) -> Settings:
    return Settings(
        database_url=database_url,
        redis_url=None,
        redis_prefix=redis_prefix,
        jwt_secret=TEST_JWT_SECRET,
        allowed_origins=(TEST_ORIGIN, "http://127.0.0.1", "http://localhost"),
        data_dir=tmp_path / "data",
        db_pool_min=1,
        db_pool_max=8,
        execution=ExecutionConfig(
            workdir_root=exec_root / "workspaces", storage_root=exec_root / "storage"
        ),
        storage=StorageConfig(directory=tmp_path / "objects"),
    )


@pytest.fixture
async def live_server(
    settings: Settings,
) -> AsyncIterator[Callable[..., Awaitable[LiveServer]]]:
    """Factory: ``await live_server()`` or ``await live_server(other_settings)``."""
    started: list[LiveServer] = []

    async def start(custom: Settings | None = None) -> LiveServer:
        server = await start_live_server(custom or settings)
        started.append(server)
        return server

    yield start
    for server in reversed(started):
        await server.stop()
