"""Content-addressed objects: a local directory or any S3-compatible bucket, one API.

Both stores are obstore's (the Rust ``object_store`` crate behind a native asyncio API):
``LocalStore`` for a directory under ``DATA_DIR`` and ``S3Store`` for AWS, MinIO, R2 and
the like. Chosen over aioboto3 because it is one library for both stores (so one
contract test covers both), streams in both directions without botocore's thread pool,
and writes atomically on every store (a temp file and rename locally, multipart upload
on S3): no reader ever sees half an object.

An object's key is ``sha256/<first two hex digits>/<64 hex digits>`` of its bytes, and
that key is what ``files.storage_path`` holds. The same bytes are stored once however
many files (or projects) hold them. A streamed upload is written under ``tmp/<uuid>``
while it is hashed and counted, then renamed to its key: an upload cut off or over the
limit leaves at most a ``tmp/`` object, which ``collect_garbage`` removes later.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import obstore
from obstore.store import LocalStore, S3Store

from storage.config import StorageConfig

KEY_PATTERN = re.compile(r"^sha256/([0-9a-f]{2})/([0-9a-f]{64})$")
TMP_PREFIX = "tmp/"
READ_CHUNK_BYTES = 256 * 1024


class TooLarge(Exception):
    """The object passed the size limit while it was being received."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"larger than {limit} bytes")
        self.limit = limit


class ObjectMissing(Exception):
    """No object under this key (or the key is not one of ours)."""


@dataclass(frozen=True)
class StoredObject:
    key: str  # files.storage_path
    sha256: str
    size: int


def key_of(sha256: str) -> str:
    return f"sha256/{sha256[:2]}/{sha256}"


def is_object_key(key: str | None) -> bool:
    return key is not None and KEY_PATTERN.match(key) is not None


def sha256_of_key(key: str) -> str:
    match = KEY_PATTERN.match(key)
    if match is None:
        raise ObjectMissing(key)
    return match.group(2)


class ObjectReader:
    """An object being read: its size first, then its bytes as chunks."""

    def __init__(self, key: str, size: int, result: Any) -> None:
        self.key = key
        self.size = size
        self._result = result

    async def chunks(self) -> AsyncIterator[bytes]:
        async for chunk in self._result.stream(min_chunk_size=READ_CHUNK_BYTES):
            yield bytes(chunk)


class ObjectStore:
    def __init__(self, store: Any, description: str) -> None:
        self._store = store
        self.description = description

    @classmethod
    def from_config(cls, config: StorageConfig) -> ObjectStore:
        if config.s3_bucket:
            options: dict[str, Any] = {"region": config.s3_region}
            if config.s3_endpoint:
                options["endpoint"] = config.s3_endpoint
                if config.s3_endpoint.startswith("http://"):
                    options["client_options"] = {"allow_http": True}
            if config.s3_access_key_id and config.s3_secret_access_key:
                options["access_key_id"] = config.s3_access_key_id
                options["secret_access_key"] = config.s3_secret_access_key
            if config.s3_prefix:
                options["prefix"] = config.s3_prefix
            store = S3Store(config.s3_bucket, **options)
            return cls(store, f"s3://{config.s3_bucket}/{config.s3_prefix}")
        config.directory.mkdir(parents=True, exist_ok=True)
        return cls(LocalStore(config.directory.resolve()), str(config.directory))

    # ---- writing -----------------------------------------------------------------------

    async def put_bytes(self, data: bytes) -> StoredObject:
        """Store ``data`` (already in memory) under its hash; nothing is written twice."""
        digest = hashlib.sha256(data).hexdigest()
        key = key_of(digest)
        if await self.size(key) is None:
            await obstore.put_async(self._store, key, data)
        return StoredObject(key, digest, len(data))

    async def put_stream(
        self, chunks: AsyncIterable[bytes], *, max_bytes: int | None = None
    ) -> StoredObject:
        """Store a stream under its hash, refusing it (``TooLarge``) past ``max_bytes``."""
        hasher = hashlib.sha256()
        size = 0

        async def counted() -> AsyncIterator[bytes]:
            nonlocal size
            async for chunk in chunks:
                if not chunk:
                    continue
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise TooLarge(max_bytes)
                hasher.update(chunk)
                yield chunk

        tmp = f"{TMP_PREFIX}{uuid.uuid4().hex}"
        try:
            await obstore.put_async(self._store, tmp, counted())
        except BaseException:
            await self._discard(tmp)
            raise
        digest = hasher.hexdigest()
        key = key_of(digest)
        if await self.size(key) is None:
            # Same bytes under the same key: overwriting a concurrent twin changes nothing.
            await obstore.rename_async(self._store, tmp, key)
        else:
            await self._discard(tmp)
        return StoredObject(key, digest, size)

    async def _discard(self, key: str) -> None:
        try:
            await obstore.delete_async(self._store, key)
        except FileNotFoundError:
            pass

    # ---- reading -----------------------------------------------------------------------

    async def size(self, key: str) -> int | None:
        """The object's size, or None when there is none under ``key``."""
        try:
            meta = await obstore.head_async(self._store, key)
        except FileNotFoundError:
            return None
        return int(meta["size"])

    async def open(self, key: str) -> ObjectReader:
        if not is_object_key(key):
            raise ObjectMissing(key)
        try:
            result = await obstore.get_async(self._store, key)
        except FileNotFoundError:
            raise ObjectMissing(key) from None
        return ObjectReader(key, int(result.meta["size"]), result)

    async def read(self, key: str) -> bytes:
        reader = await self.open(key)
        return b"".join([chunk async for chunk in reader.chunks()])

    # ---- removing ----------------------------------------------------------------------

    async def delete(self, key: str) -> None:
        await self._discard(key)

    async def keys(self, prefix: str) -> AsyncIterator[tuple[str, datetime]]:
        """(key, last modified) of every object under ``prefix``."""
        async for batch in obstore.list(self._store, prefix, chunk_size=1000):
            for meta in batch:
                yield str(meta["path"]), meta["last_modified"]

    async def stale_keys(self, older_than: timedelta) -> list[str]:
        """Objects and abandoned ``tmp/`` uploads older than ``older_than``: the candidates
        for garbage collection (an upload whose row is not committed yet is younger)."""
        cutoff = datetime.now(UTC) - older_than
        return [
            key
            for prefix in ("sha256/", TMP_PREFIX)
            async for key, modified in self.keys(prefix)
            if modified < cutoff
        ]
