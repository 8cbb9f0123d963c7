"""How many bytes a project may keep: in its workdir (the size of its loop image, or what
the watcher allows) and in ``files`` + storage (what ``sync_back`` copies back).

One function, so billing can replace it with the plan's ``limits.storage_gb``; until then
it is the ``PROJECT_DISK_QUOTA_BYTES`` setting for every project.
"""

from __future__ import annotations

import uuid

from execution.config import ExecutionConfig
from persistence.db import Database


async def project_disk_quota(db: Database, config: ExecutionConfig, project_id: uuid.UUID) -> int:
    """Bytes the project may use (the setting today; the plan's storage later)."""
    del db, project_id  # what billing will look the plan up with
    return config.project_disk_quota_bytes
