"""A local S3-compatible server for tests: moto's server (``moto[server]`` from PyPI), in
its own process on a free port, one bucket per test."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from storage.config import StorageConfig
from tests.support.net import free_port, wait_tcp

ACCESS_KEY = "test-access-key"
SECRET_KEY = "test-secret-key"  # moto accepts any signature; obstore signs with these


@dataclass
class LocalS3:
    proc: subprocess.Popen[bytes]
    port: int

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def new_bucket(self) -> str:
        name = f"test-{uuid.uuid4().hex[:12]}"
        async with aiohttp.ClientSession() as session, session.put(
            f"{self.endpoint}/{name}"
        ) as resp:
            resp.raise_for_status()
        return name

    def config(self, bucket: str, directory: Path) -> StorageConfig:
        return StorageConfig(
            directory=directory, s3_bucket=bucket, s3_endpoint=self.endpoint,
            s3_access_key_id=ACCESS_KEY, s3_secret_access_key=SECRET_KEY,
        )

    def close(self) -> None:
        self.proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def start_local_s3() -> LocalS3:
    """Started synchronously, so a session-scoped fixture can hold it."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    s3 = LocalS3(proc, port)
    try:
        wait_tcp("127.0.0.1", port, timeout_s=60)
    except BaseException:
        s3.close()
        raise
    return s3
