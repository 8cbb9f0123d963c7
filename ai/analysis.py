"""Code analyses (explain, complexity, security, performance) as jobs on the queue, cached.

``request`` (the API, after authorizing a member): the live text of the file, its hash with
the language and line range; a cached result for (project, hash, type, model) that has not
expired is answered at once. Otherwise, in one transaction: the ai_jobs row holding the
token reservation (the allowance, as for chat) and the ``ai.analysis`` job, deduplicated by
the same key (two requests for the same analysis share one job and one reservation).

The job runs the real analysers (``ai.analysers``), asks the model to explain and rank
their findings by id (``ai.analysis_prompt``), stores the result in ``code_analyses``
(replacing results of older contents of the file: a changed file invalidates), settles the
tokens and publishes ``analysis.completed`` (or ``analysis.failed``) on the project channel.
It is idempotent: a second run of a finished job returns the stored result.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from pydantic import BaseModel

import jobs
from ai import analysis_prompt, metering
from ai.analysers import Report, analyse, language_of
from ai.config import AIConfig
from ai.providers.base import ProviderError, TextDelta, Usage
from ai.registry import ProviderSlot
from ai.tool_loop import add_usage
from persistence import ai_jobs as jobs_store
from persistence import code_analyses as store
from persistence.db import Database

CACHE_TTL = timedelta(days=7)
# A result the model could not rank (provider down) is kept briefly, then asked again.
UNRANKED_TTL = timedelta(minutes=10)
MAX_TEXT_CHARS = 200_000
MAX_ANSWER_TOKENS = 800
JOB_TYPE = {"explain": "explain"}  # the seed's ai_jobs.job_type; the other three: 'analyze'

Publish = Callable[[uuid.UUID, dict[str, Any]], Awaitable[None]]


class AnalysisError(Exception):
    def __init__(self, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        # Beside code and message (quota_exceeded: resource, limit, used, plan).
        self.extra = extra


class AnalysisInput(BaseModel):
    ai_job_id: uuid.UUID
    project_id: uuid.UUID
    workspace_id: uuid.UUID
    user_id: uuid.UUID
    file_id: uuid.UUID
    path: str
    analysis_type: str
    text: str
    lines: tuple[int, int] | None
    content_hash: str
    model: str | None


def content_hash(language: str, text: str, lines: tuple[int, int] | None) -> str:
    span = f"{lines[0]}:{lines[1]}" if lines else "all"
    return hashlib.sha256(f"{language}\0{span}\0{text}".encode()).hexdigest()


def excerpt(text: str, lines: tuple[int, int] | None) -> tuple[str, int]:
    if lines is None:
        return text, 1
    return "\n".join(text.splitlines()[lines[0] - 1 : lines[1]]), lines[0]


def public(row: dict[str, Any], current_hash: str | None = None) -> dict[str, Any]:
    result = dict(row["result"] or {})
    lines = [row["line_start"], row["line_end"]] if row["line_start"] is not None else None
    out = {
        "id": row["id"], "project_id": row["project_id"], "file_id": row["file_id"],
        "file_path": row["file_path"], "analysis_type": row["analysis_type"],
        "model": row["model"], "content_hash": row["content_hash"], "lines": lines,
        "job_id": row["job_id"], "created_at": row["created_at"],
        "expires_at": row["expires_at"], **result,
    }
    if current_hash is not None:
        out["stale"] = current_hash != row["content_hash"]
    return out


class Analyses:
    def __init__(
        self, db: Database, slot: ProviderSlot, config: AIConfig, publish: Publish | None,
    ) -> None:
        self.db = db
        self.slot = slot
        self.config = config
        self.publish = publish
        self.job = analysis_job

    def model_key(self) -> str:
        provider = self.slot.provider
        return provider.model if provider is not None else self.slot.name

    async def request(
        self, *, user_id: uuid.UUID, project_id: uuid.UUID, file_id: uuid.UUID, path: str,
        text: str, analysis_type: str, lines: tuple[int, int] | None,
    ) -> dict[str, Any]:
        """``{"cached": true, "analysis"}`` or ``{"cached": false, "job_id", "status"}``."""
        language = language_of(path)
        if language is None:
            raise AnalysisError("unsupported_language",
                                "analyses cover Python, JavaScript and TypeScript files")
        if len(text) > MAX_TEXT_CHARS:
            raise AnalysisError("too_large", f"files over {MAX_TEXT_CHARS} characters are not "
                                             "analysed")
        if lines is not None:
            last = max(1, text.count("\n") + 1)
            lines = (max(1, min(lines[0], last)), max(1, min(lines[1], last)))
            lines = (min(lines), max(lines))
        digest = content_hash(language, text, lines)
        model = self.model_key()
        async with self.db.service() as conn:
            cached = await store.lookup(conn, project_id, digest, analysis_type, model)
            if cached is not None:
                return {"cached": True, "analysis": public(cached, digest)}
            try:
                job_id = await self._enqueue(conn, user_id, project_id, file_id, path, text,
                                             analysis_type, lines, digest, model)
            except _Deduplicated as known:
                job_id = known.ai_job_id
        return {"cached": False, "job_id": job_id, "status": "pending"}

    async def _enqueue(
        self, conn: asyncpg.Connection, user_id: uuid.UUID, project_id: uuid.UUID,
        file_id: uuid.UUID, path: str, text: str, analysis_type: str,
        lines: tuple[int, int] | None, digest: str, model: str,
    ) -> uuid.UUID:
        reserve = min(len(text) // 3, 12_000) + MAX_ANSWER_TOKENS + 600
        job_input = {"file_id": str(file_id), "path": path, "analysis_type": analysis_type,
                     "lines": list(lines) if lines else None, "content_hash": digest}
        async with conn.transaction():
            try:
                reserved = await metering.reserve(
                    conn, user_id=user_id, project_id=project_id,
                    job_type=JOB_TYPE.get(analysis_type, "analyze"), job_input=job_input,
                    model=model, tokens=reserve, stale_after_s=self.config.stale_job_s,
                )
            except metering.QuotaExceeded as exc:
                raise AnalysisError(exc.code, exc.message, resource="ai_tokens", limit=exc.limit,
                                 used=exc.used, plan=exc.plan) from None
            payload = AnalysisInput(
                ai_job_id=reserved.job_id, project_id=project_id,
                workspace_id=reserved.workspace_id, user_id=user_id, file_id=file_id,
                path=path, analysis_type=analysis_type, text=text, lines=lines,
                content_hash=digest, model=model,
            )
            queued = await jobs.enqueue(
                conn, self.job, payload,
                dedupe_key=f"ai.analysis:{project_id}:{digest}:{analysis_type}:{model}",
            )
            owner = await conn.fetchval(
                "select (input ->> 'ai_job_id')::uuid from public.background_jobs where id = $1",
                queued)
            if owner != reserved.job_id:
                # The same analysis is queued already: drop this reservation, share that job.
                raise _Deduplicated(owner)
        return reserved.job_id

    # -- the job --------------------------------------------------------------------------

    async def run(self, ctx: jobs.JobContext, payload: AnalysisInput) -> dict[str, Any]:
        started = time.monotonic()
        async with ctx.db.service() as conn:
            if not await jobs_store.start_job(conn, payload.ai_job_id):
                cached = await store.lookup(conn, payload.project_id, payload.content_hash,
                                            payload.analysis_type, payload.model)
                return {"analysis_id": str(cached["id"]) if cached else None, "rerun": True}
        report = (await analyse(payload.path, payload.text)).select(
            payload.analysis_type, payload.lines)
        code, first_line = excerpt(payload.text, payload.lines)
        usage, ranked, summary, model_error = await self._rank(payload, report, code,
                                                               first_line)
        result = {
            "language": report.language,
            "findings": [finding.to_json() for finding in report.findings],
            "blocks": [block.to_json() for block in report.blocks],
            "summary": summary, "ranked_by_model": ranked, "metrics": report.metrics,
            "tools": sorted(report.tools), "errors": report.errors, "model_error": model_error,
        }
        ttl = CACHE_TTL if model_error is None else UNRANKED_TTL
        duration_ms = int((time.monotonic() - started) * 1000)
        async with ctx.db.service() as conn, conn.transaction():
            row = await store.store(
                conn, project_id=payload.project_id, file_id=payload.file_id,
                file_path=payload.path, analysis_type=payload.analysis_type, result=result,
                model=payload.model, content_hash=payload.content_hash, lines=payload.lines,
                job_id=payload.ai_job_id, expires_at=datetime.now(UTC) + ttl,
            )
            await metering.settle(
                conn, payload.ai_job_id, user_id=payload.user_id,
                workspace_id=payload.workspace_id, status="completed",
                output={"analysis_id": str(row["id"]), "findings": len(report.findings),
                        "ranked_by_model": ranked},
                error=model_error, usage=usage, model=payload.model, duration_ms=duration_ms,
                metadata={"analysis_type": payload.analysis_type},
            )
        if self.publish is not None:
            await self.publish(payload.project_id, {
                "type": "analysis.completed", "job_id": payload.ai_job_id,
                "analysis": public(row, payload.content_hash),
            })
        return {"analysis_id": str(row["id"]), "findings": len(report.findings)}

    async def _rank(
        self, payload: AnalysisInput, report: Report, code: str, first_line: int,
    ) -> tuple[Usage | None, bool, str | None, str | None]:
        """(usage, ranked_by_model, summary, model error code)."""
        prompt = analysis_prompt.build(payload.path, code, report, payload.analysis_type,
                                       first_line)
        if prompt is None:
            return None, False, "The analysers found nothing to report here.", None
        provider = await self.slot.get()
        if provider is None:
            return None, False, None, self.slot.unavailable()[0]
        answer: list[str] = []
        usage: Usage | None = None
        try:
            async for event in provider.stream(prompt, max_tokens=MAX_ANSWER_TOKENS):
                if isinstance(event, TextDelta):
                    answer.append(event.text)
                elif isinstance(event, Usage):
                    usage = add_usage(usage, event)
        except ProviderError as exc:
            return usage, False, None, exc.code
        ranked, summary = analysis_prompt.apply(report, payload.analysis_type, "".join(answer))
        return usage, ranked, summary, None


@jobs.job("ai.analysis", input=AnalysisInput, job_type="ai_processing", max_attempts=2,
          concurrency=2, timeout=300)
async def analysis_job(ctx: jobs.JobContext, payload: AnalysisInput) -> dict[str, Any]:
    """Run by any worker that has an ``Analyses`` (the server's, ``python -m server
    worker``): its provider slot and project channel."""
    return await ctx.resource(Analyses).run(ctx, payload)


JOBS: list[jobs.Job[Any]] = [analysis_job]


class _Deduplicated(Exception):
    def __init__(self, ai_job_id: uuid.UUID) -> None:
        super().__init__(str(ai_job_id))
        self.ai_job_id = ai_job_id
