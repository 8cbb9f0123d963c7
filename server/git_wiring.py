"""The git runtime of a process: built by the app's lifespan (its worker runs the git jobs
with the server's own hubs) and by ``python -m server worker``."""

from __future__ import annotations

from typing import Any

from gitsync.live import HubPort, LiveFiles
from gitsync.runner import Git
from gitsync.secretbox import SecretBox
from gitsync.sync import Events, GitRuntime
from persistence.db import Database
from server.api.filetypes import language_of, mime_type_of
from server.settings import Settings
from storage.objects import ObjectStore


def file_types(name: str) -> tuple[str | None, str | None]:
    return mime_type_of(name), language_of(name)


def build_git_runtime(
    settings: Settings, db: Database, documents: HubPort | None, projects: Events | None,
    objects: ObjectStore, **extra: Any,
) -> GitRuntime:
    settings.git.cache_dir.mkdir(parents=True, exist_ok=True)
    return GitRuntime(
        config=settings.git, db=db, git=Git(settings.git), live=LiveFiles(documents, db),
        objects=objects, events=projects, file_types=file_types,
        max_text_bytes=settings.storage.max_text_bytes,
        secrets=SecretBox.load(settings.encryption_keys, settings.data_dir), **extra,
    )
