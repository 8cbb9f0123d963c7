"""One contract, two stores: a local directory and an S3-compatible server (moto)."""

from __future__ import annotations

import asyncio
import hashlib
import os
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from storage.objects import ObjectMissing, ObjectStore, TooLarge, is_object_key, key_of


async def chunked(data: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]
        await asyncio.sleep(0)


async def test_bytes_are_stored_under_their_hash(object_store: ObjectStore) -> None:
    data = b"\x89PNG\r\n\x1a\n" + os.urandom(1000)
    stored = await object_store.put_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    assert stored.sha256 == digest
    assert stored.key == key_of(digest) == f"sha256/{digest[:2]}/{digest}"
    assert is_object_key(stored.key)
    assert stored.size == len(data)
    assert await object_store.size(stored.key) == len(data)
    assert await object_store.read(stored.key) == data


async def test_a_stream_is_hashed_and_stored_in_parts(object_store: ObjectStore) -> None:
    # 12 MB: more than two parts of a multipart upload on S3.
    data = os.urandom(12 * 1024 * 1024 + 17)
    stored = await object_store.put_stream(chunked(data), max_bytes=len(data))
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert stored.size == len(data)
    reader = await object_store.open(stored.key)
    assert reader.size == len(data)
    received = bytearray()
    async for chunk in reader.chunks():
        received += chunk
    assert bytes(received) == data
    # Nothing is left under tmp/.
    assert [key async for key, _ in object_store.keys("tmp/")] == []


async def test_the_same_bytes_are_kept_once(object_store: ObjectStore) -> None:
    data = os.urandom(300_000)
    first, second, third = await asyncio.gather(
        object_store.put_stream(chunked(data)),
        object_store.put_stream(chunked(data)),
        object_store.put_bytes(data),
    )
    assert first == second == third
    keys = [key async for key, _ in object_store.keys("sha256/")]
    assert keys == [first.key]
    assert [key async for key, _ in object_store.keys("tmp/")] == []


async def test_a_stream_over_the_limit_leaves_nothing(object_store: ObjectStore) -> None:
    data = os.urandom(200_000)
    with pytest.raises(TooLarge) as caught:
        await object_store.put_stream(chunked(data, 10_000), max_bytes=150_000)
    assert caught.value.limit == 150_000
    assert [key async for key, _ in object_store.keys("")] == []


async def test_a_failing_source_leaves_nothing(object_store: ObjectStore) -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"x" * 100_000
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await object_store.put_stream(broken())
    assert [key async for key, _ in object_store.keys("")] == []


async def test_missing_and_foreign_keys(object_store: ObjectStore) -> None:
    absent = key_of("0" * 64)
    assert await object_store.size(absent) is None
    with pytest.raises(ObjectMissing):
        await object_store.open(absent)
    for foreign in ("../etc/passwd", "tmp/abc", "sha256/zz/" + "0" * 64, "/" + absent):
        with pytest.raises(ObjectMissing):
            await object_store.open(foreign)


async def test_stale_keys_and_delete(object_store: ObjectStore) -> None:
    kept = await object_store.put_bytes(b"kept")
    gone = await object_store.put_bytes(b"gone")
    assert await object_store.stale_keys(timedelta(hours=1)) == []
    stale = await object_store.stale_keys(timedelta(seconds=-60))
    assert sorted(stale) == sorted([kept.key, gone.key])
    await object_store.delete(gone.key)
    await object_store.delete(gone.key)  # deleting twice is fine
    assert await object_store.size(gone.key) is None
    assert await object_store.read(kept.key) == b"kept"
