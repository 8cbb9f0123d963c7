"""``POST /git/webhooks/{repository_id}``: a provider's push webhook becomes a pull job.

1. The repository's secret verifies the raw body (``gitsync.webhooks``): 401 otherwise,
   and nothing is stored (an unverified body is nobody's event).
2. The delivery is stored in ``webhook_logs`` (status ``received``) before anything else;
   a delivery id seen before answers 200 at once (providers retry, and deliver out of
   order: every push just asks for a pull of the branch's newest state).
3. A push to the tracked branch enqueues ``git.pull`` (deduplicated while one is pending)
   and the row becomes ``processed`` with the job's id; other events are ``processed`` as
   ignored; a failure marks it ``failed`` with the error (the provider's retry comes back
   to step 2 and finds it).
"""

from __future__ import annotations

import uuid
from typing import Any

import jobs
from gitsync import jobs as git_jobs
from gitsync.sync import webhook_context
from gitsync.webhooks import MAX_BODY_BYTES, WebhookRejected, verify
from persistence import git as store
from server.api.routing import Ctx, Endpoint
from server.errors import ApiError


async def receive(ctx: Ctx) -> dict[str, Any]:
    repository_id = ctx.uuid("repository_id")
    raw = await ctx.request.body()
    if not raw:
        raise ApiError(400, "invalid_payload", "the body is empty")
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, "payload_too_large", "webhook body too large")
    async with ctx.db.acquire() as conn:
        row = await store.get(conn, repository_id)
        _, sealed = await store.secrets(conn, repository_id)
    rt = ctx.services.git
    if row is None or sealed is None or rt is None or rt.secrets is None:
        raise ApiError(404, "not_found", "no such webhook")
    secret = rt.secrets.decrypt(sealed, webhook_context(repository_id))
    try:
        delivery = verify(row["provider"], dict(ctx.request.headers), raw, secret)
    except WebhookRejected as exc:
        raise ApiError(exc.status, exc.code, exc.message) from None
    async with ctx.db.service() as conn:
        log_id = await store.insert_webhook(
            conn, delivery.provider, delivery.event_type, delivery.payload,
            delivery.signature, delivery.delivery_id,
        )
    if log_id is None:
        return {"status": "duplicate"}
    try:
        response = await _process(ctx, row, delivery.is_push, delivery.branches, log_id)
    except Exception as exc:
        async with ctx.db.service() as conn:
            await store.finish_webhook(conn, log_id, "failed", None, str(exc)[:2000])
        raise
    return response


async def _process(
    ctx: Ctx, row: dict[str, Any], is_push: bool, branches: tuple[str, ...], log_id: uuid.UUID
) -> dict[str, Any]:
    async with ctx.db.service() as conn:
        if not is_push:
            response: dict[str, Any] = {"status": "ignored", "reason": "not a push"}
        elif row["default_branch"] not in branches:
            response = {"status": "ignored", "reason": "another branch"}
        else:
            job_id = await jobs.enqueue(
                conn, git_jobs.pull, git_jobs.RepositoryJob(repository_id=row["id"]),
                dedupe_key=f"git.pull:{row['id']}",
            )
            response = {"status": "queued", "job_id": str(job_id)}
        await store.finish_webhook(conn, log_id, "processed", response, None)
    return response


ENDPOINTS = [
    Endpoint("POST", "/git/webhooks/{repository_id}", receive,
             "A provider's push webhook (GitHub, GitLab, Bitbucket): a pull job", "git",
             auth=False, errors=(401,), raw_body="application/json"),
]
