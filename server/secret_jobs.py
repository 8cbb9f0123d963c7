"""The jobs of stored secrets: re-encryption under the newest key, OAuth token refresh.

They need the keyring (``ENCRYPTION_KEYS``) and the OAuth settings, which a job's context
does not carry, so they are made from the settings (``secret_jobs(settings)``, listed by
``server.background.all_jobs``). Both are recurring and idempotent; the app also queues a
re-encryption at start (deduplicated), so a rotated key takes over within one run.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import asyncpg
from pydantic import BaseModel

from jobs import Job, JobContext, enqueue, job
from persistence.crypto import load_keyring
from persistence.reencrypt import reencrypt_all
from server.oauth.service import OAuthService
from server.oauth.tokens import refresh_expiring
from server.settings import Settings

REENCRYPT = "secrets.reencrypt"
REFRESH = "oauth.refresh_tokens"


class ReencryptInput(BaseModel):
    batch: int = 200


class RefreshInput(BaseModel):
    # Refresh what expires within this window; the job runs every 5 minutes.
    within_s: float = 900
    limit: int = 500


def secret_jobs(settings: Settings) -> list[Job[Any]]:
    keyring = load_keyring(settings.encryption_keys, settings.data_dir)

    @job(REENCRYPT, input=ReencryptInput, job_type="cleanup", every=timedelta(hours=6),
         timeout=1800, concurrency=1)
    async def reencrypt(ctx: JobContext, payload: ReencryptInput) -> dict[str, Any]:
        report = await reencrypt_all(ctx.db, keyring, payload.batch)
        if any(report.reencrypted.values()) or report.failed:
            ctx.log.info("re-encrypted under %s: %s", keyring.primary_id, report.as_dict())
        return {"key_id": keyring.primary_id, **report.as_dict()}

    @job(REFRESH, input=RefreshInput, job_type="sync", every=timedelta(minutes=5),
         timeout=240, concurrency=1)
    async def refresh(ctx: JobContext, payload: RefreshInput) -> dict[str, Any]:
        service = OAuthService(settings.oauth, ctx.db, keyring)
        try:
            due = await refresh_expiring(service, payload.within_s, payload.limit)
        finally:
            await service.close()
        return {"due": due}

    return [reencrypt, refresh]


async def queue_reencryption(conn: asyncpg.Connection, jobs: list[Job[Any]]) -> None:
    """Ask for a re-encryption now (one at a time: deduplicated while one is queued)."""
    found = next((j for j in jobs if j.name == REENCRYPT), None)
    if found is not None:
        await enqueue(conn, found, ReencryptInput(), dedupe_key=REENCRYPT)
