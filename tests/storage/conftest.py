"""The object stores under test: a local directory and a local S3-compatible server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from storage.config import StorageConfig
from storage.objects import ObjectStore
from tests.support.s3 import LocalS3, start_local_s3


@pytest.fixture(scope="session")
def local_s3() -> Iterator[LocalS3]:
    s3 = start_local_s3()
    yield s3
    s3.close()


@pytest.fixture(params=["local", "s3"])
async def object_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> ObjectStore:
    if request.param == "local":
        return ObjectStore.from_config(StorageConfig(directory=tmp_path / "objects"))
    s3: LocalS3 = request.getfixturevalue("local_s3")
    bucket = await s3.new_bucket()
    return ObjectStore.from_config(s3.config(bucket, tmp_path / "unused"))
