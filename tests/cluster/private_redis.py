"""A redis-server of the test's own, restartable even when REDIS_URL is set."""

from __future__ import annotations

from tests.support.databases import RedisForTests
from tests.support.net import free_port


class PrivateRedis(RedisForTests):
    """Always a private process on a free port, never the shared ``REDIS_URL``."""

    def __init__(self) -> None:
        self.proc = None
        self.port = free_port()
        self.start_process()
        self.url = f"redis://127.0.0.1:{self.port}/0"
