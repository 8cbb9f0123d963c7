"""The git runtime of a process: built by the app's lifespan (its worker runs the git jobs
with the server's own hubs) and by ``python -m server worker``."""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

from collab.hub import DocumentHub
from collab.project_hub import ProjectHub, ProjectHubConfig
from gitsync.live import HubPort, LiveFiles
from gitsync.runner import Credentials, Git
from gitsync.sync import Events, GitRuntime, OAuthCredentials
from persistence.crypto import Keyring, load_keyring
from persistence.db import Database
from persistence.documents import PostgresDocumentStore
from persistence.editor_sessions import PostgresEditorSessions
from server.api.filetypes import language_of, mime_type_of
from server.oauth.errors import NotConnected, ReconnectRequired
from server.oauth.service import OAuthService
from server.oauth.tokens import access_token
from server.settings import Settings
from storage.objects import ObjectStore

log = logging.getLogger(__name__)


def file_types(name: str) -> tuple[str | None, str | None]:
    return mime_type_of(name), language_of(name)


def oauth_credentials(oauth: OAuthService) -> OAuthCredentials:
    """Git credentials from a user's connected provider account (refreshed when due):
    ``server.oauth.tokens.access_token``; None when the user has no working connection."""

    async def credentials(user_id: uuid.UUID, provider: str) -> Credentials | None:
        try:
            token = await access_token(oauth, user_id, provider)
        except (NotConnected, ReconnectRequired):
            return None
        return Credentials(token.git_username, token.access_token)

    return credentials


def build_git_runtime(
    settings: Settings, db: Database, documents: HubPort | None, projects: Events | None,
    objects: ObjectStore, keyring: Keyring, oauth: OAuthService | None, **extra: Any,
) -> GitRuntime:
    settings.git.cache_dir.mkdir(parents=True, exist_ok=True)
    return GitRuntime(
        config=settings.git, db=db, git=Git(settings.git), live=LiveFiles(documents, db),
        objects=objects, events=projects, file_types=file_types,
        max_text_bytes=settings.storage.max_text_bytes, secrets=keyring,
        oauth=oauth_credentials(oauth) if oauth is not None else None, **extra,
    )


@contextlib.asynccontextmanager
async def worker_git_runtime(settings: Settings, db: Database) -> AsyncIterator[GitRuntime | None]:
    """For a worker process apart from the servers: a document hub and a project channel
    of its own, joined to the servers' through Redis, so what a sync writes reaches open
    editors on every node. Without Redis there is no way to reach them: None (the git jobs
    are then left to the servers' in-process workers)."""
    if not settings.redis_url:
        log.warning("no REDIS_URL: this worker leaves the git jobs to the servers")
        yield None
        return
    from broker.redis_broker import RedisBroker

    broker = RedisBroker(settings.redis_url, settings.instance_id, prefix=settings.redis_prefix)
    await broker.start()
    documents = DocumentHub(PostgresDocumentStore(db), broker, settings.collab)
    projects = ProjectHub(broker, PostgresEditorSessions(db),
                          ProjectHubConfig.from_collab(settings.collab))
    await documents.start()
    await projects.start()
    keyring = load_keyring(settings.encryption_keys, settings.data_dir)
    oauth = OAuthService(settings.oauth, db, keyring)
    runtime = build_git_runtime(settings, db, documents, projects,
                                ObjectStore.from_config(settings.storage), keyring, oauth)
    try:
        yield runtime
    finally:
        runtime.git.close()
        await documents.stop()
        await projects.close()
        await oauth.close()
        await broker.close()
