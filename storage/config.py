"""Where binary and large files are kept, and how large they may be."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StorageConfig:
    # A local directory by default; an S3-compatible bucket when ``s3_bucket`` is set.
    directory: Path = Path(".data/objects")
    s3_bucket: str | None = None
    s3_endpoint: str | None = None  # None: AWS; e.g. http://127.0.0.1:9000 for MinIO
    s3_region: str = "us-east-1"
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    s3_prefix: str = ""
    # Largest upload accepted over REST (until the plan's storage limit applies).
    max_upload_bytes: int = 100 * 1024 * 1024
    # Text larger than this is kept as an object, not as a CRDT document.
    max_text_bytes: int = 1024 * 1024

    @classmethod
    def from_env(cls, env: Mapping[str, str], data_dir: Path) -> StorageConfig:
        d = cls()
        return cls(
            directory=Path(env.get("STORAGE_DIR") or data_dir / "objects"),
            s3_bucket=env.get("STORAGE_S3_BUCKET") or None,
            s3_endpoint=env.get("STORAGE_S3_ENDPOINT") or None,
            s3_region=env.get("STORAGE_S3_REGION", d.s3_region),
            s3_access_key_id=env.get("STORAGE_S3_ACCESS_KEY_ID") or None,
            s3_secret_access_key=env.get("STORAGE_S3_SECRET_ACCESS_KEY") or None,
            s3_prefix=env.get("STORAGE_S3_PREFIX", "").strip("/"),
            max_upload_bytes=int(env.get("MAX_UPLOAD_BYTES", d.max_upload_bytes)),
            max_text_bytes=int(env.get("MAX_TEXT_FILE_BYTES", d.max_text_bytes)),
        )
