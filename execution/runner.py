"""The execution hub: accepts a run, owns its task, streams its output, stores the record.

Why over 400 lines: one run's lifecycle (queue, slot, workspace, backend, output stream,
record, events) is one state machine over ``_Live``; the scheduler, backends, workspace and
status mapping are their own modules.

Lifecycle: ``submit`` stores a ``code_executions`` row (in_queue), puts the run in the fair
queue (``execution.scheduler``: tenants take turns, per-user and per-project caps) and
returns it at once with its ``queue_position``; a task owned by the hub waits for its slot
(publishing ``execution.queued`` whenever its position moves), materializes the project's
files (local backend), runs the code,
brings changed files back, stores the final record, adds a usage row, and publishes
``execution.started`` / ``execution.output`` / ``execution.finished`` on the project channel
and to local subscribers (the SSE endpoint). ``close`` cancels what still runs and marks
those rows as interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Hashable
from dataclasses import dataclass, field, replace
from typing import Any

from billing import limits as billing_limits
from collab.ports import Documents, ProjectEvents
from execution import status as st
from execution.backend import (
    Backend,
    ExecutionError,
    ExecutionRequest,
    ExecutionResult,
    make_backend,
)
from execution.config import ExecutionConfig
from execution.languages import BASE_LANGUAGES, GO, JAVA, RUST
from execution.local import LocalBackend
from execution.masking import MaskedOutput
from execution.quota import project_disk_quota
from execution.sandbox import Limits, OutputSink
from execution.scheduler import NOT_QUEUED, FairScheduler, Ticket
from execution.workspace import (
    Manifest,
    SyncReport,
    Workspaces,
    quota_message,
    rejected_message,
)
from observability.timings import EXECUTION, Timings
from persistence import executions as store
from persistence import files as file_store
from persistence.db import Database
from persistence.environment import (
    EMPTY,
    EnvironmentUnavailable,
    EnvironmentVariables,
    ProjectEnvironment,
)
from storage.objects import ObjectStore

log = logging.getLogger(__name__)
SUBSCRIBER_QUEUE = 1024
KNOWN_IDS = tuple(lang.id for lang in (*BASE_LANGUAGES, JAVA, RUST, GO))


@dataclass(frozen=True)
class RunLimits:
    """What a request may ask for; each value is capped by the configuration."""

    cpu_time_s: float | None = None
    wall_time_s: float | None = None
    memory_kb: int | None = None

    def resolve(self, config: ExecutionConfig) -> Limits:
        base = Limits.default(config)
        return replace(
            base,
            cpu_time_s=min(self.cpu_time_s or base.cpu_time_s, config.max_cpu_time_s),
            wall_time_s=min(self.wall_time_s or base.wall_time_s, config.max_wall_time_s),
            memory_kb=min(self.memory_kb or base.memory_kb, config.max_memory_kb),
        )


@dataclass
class _Live:
    """An execution in this process: its events so far and who is listening."""

    row: dict[str, Any]
    ticket: Ticket
    events: list[dict[str, Any]] = field(default_factory=list)
    listeners: list[asyncio.Queue[dict[str, Any] | None]] = field(default_factory=list)
    done: bool = False


class ExecutionHub:
    def __init__(
        self,
        config: ExecutionConfig,
        db: Database,
        backend: Backend | None = None,
        *,
        documents: Documents | None = None,
        projects: ProjectEvents | None = None,
        objects: ObjectStore | None = None,
        variables: EnvironmentVariables | None = None,
        timings: Timings | None = None,
    ) -> None:
        self.config = config
        self.db = db
        self.documents = documents
        self.projects = projects
        # The project's development variables go into every run (persistence.environment).
        self.variables = variables
        # Run times per language (performance_metrics).
        self.timings = timings
        self.backend = backend or make_backend(config)
        self.workspaces = Workspaces(
            config, db, documents=documents, projects=projects, objects=objects
        )
        self._tasks: dict[uuid.UUID, asyncio.Task[None]] = {}
        self._live: dict[uuid.UUID, _Live] = {}
        self.scheduler = make_scheduler(config)
        self.finished = 0

    async def start(self) -> None:
        await self.backend.start()

    async def close(self) -> None:
        unfinished = list(self._tasks)
        for task in self._tasks.values():
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        if unfinished:
            with contextlib.suppress(Exception):
                async with self.db.service() as conn:
                    await store.abandon_unfinished(conn, unfinished)
        for live in self._live.values():
            self._end(live)
        await self.backend.close()

    def health(self) -> dict[str, Any]:
        queue = self.scheduler.stats()
        return {
            **self.backend.health(),
            "running": queue.running,
            "queued": queue.waiting,
            "finished": self.finished,
        }

    async def languages(self) -> list[dict[str, Any]]:
        return await self.backend.languages()

    def unavailable(self) -> str | None:
        """Why no run can start here (the local sandbox is missing or broken), or None."""
        if isinstance(self.backend, LocalBackend):
            return self.backend.sandbox.problem
        return None

    # -- submitting ---------------------------------------------------------------------

    async def submit(
        self,
        *,
        user_id: uuid.UUID,
        project_id: uuid.UUID,
        language: str | None,
        source: str | None,
        file_id: uuid.UUID | None,
        stdin: str,
        limits: RunLimits,
    ) -> dict[str, Any]:
        problem = self.unavailable()
        if problem is not None:
            raise ExecutionError("sandbox_unavailable", problem)
        source_path: str | None = None
        if file_id is not None:
            async with self.db.service() as conn:
                file_row = await file_store.get_file(conn, file_id, content=True)
            if (file_row is None or file_row["project_id"] != project_id
                    or file_row["is_deleted"]):
                raise ExecutionError("file_not_found", "no such file in this project")
            if file_row["type"] != "file":
                raise ExecutionError("not_a_file", "a folder cannot be run")
            source_path = file_row["path"].lstrip("/")
            documents = self.documents
            text = await documents.read_text(file_id) if documents is not None else None
            source = text if text is not None else (file_row["content"] or "")
            language = language or _language_for(source_path)
        if source is None:
            raise ExecutionError("missing_source", "give source_code or file_id")
        available = await self._available()
        if language is None or language not in available:
            raise ExecutionError(
                "unknown_language",
                f"language {language!r} is not available (available: {sorted(available)})",
            )
        if self.scheduler.waiting_of(user_id) >= self.config.max_queued_per_user:
            raise ExecutionError(
                "too_many_runs",
                f"you have {self.config.max_queued_per_user} runs waiting already; "
                "wait for them to start",
            )
        environment = await self._environment(project_id)
        async with self.db.service() as conn:
            if project_id is not None:
                # The payer's monthly runs, taken in the transaction that records this one.
                await billing_limits.take_for_project(conn, project_id, "executions")
            row = await store.create_execution(
                conn, user_id=user_id, project_id=project_id, file_id=file_id,
                language=language, source=source, stdin=stdin,
                status=st.status(st.IN_QUEUE).code, backend=self.backend.name,
            )
            workspace_id = await store.project_workspace(conn, project_id)
        request = ExecutionRequest(
            language=language, source=source, stdin=stdin, limits=limits.resolve(self.config),
            source_path=source_path, owner_key=str(project_id),
            env=environment.variables, secret_values=environment.secret_values,
        )
        execution_id: uuid.UUID = row["id"]
        ticket = self.scheduler.enqueue(
            execution_id, owner=self._tenant(workspace_id, user_id), user=user_id,
            project=project_id,
        )
        live = _Live(row, ticket)
        self._live[execution_id] = live
        self._tasks[execution_id] = asyncio.create_task(
            self._run(execution_id, user_id, project_id, request), name=f"execution-{execution_id}"
        )
        return {**row, "queue_position": ticket.position}

    def _tenant(self, workspace_id: uuid.UUID | None, user_id: uuid.UUID) -> Hashable:
        if self.config.run_queue == "fifo":
            return "everyone"
        return workspace_id or user_id

    async def _environment(self, project_id: uuid.UUID) -> ProjectEnvironment:
        if self.variables is None:
            return EMPTY
        try:
            return await self.variables.load(project_id)
        except EnvironmentUnavailable as exc:
            raise ExecutionError("environment_unavailable", str(exc)) from None

    async def _available(self) -> set[str]:
        """Language ids to accept. Until the sandbox's first toolchain check has finished,
        the local backend accepts every language it knows (the 202 must not wait for it);
        a toolchain that then turns out missing ends the run as an internal error."""
        backend = self.backend
        if isinstance(backend, LocalBackend) and not backend.detected:
            backend.start_detection()
            return set(KNOWN_IDS)
        return {lang["id"] for lang in await backend.languages()}

    # -- running ------------------------------------------------------------------------

    async def _run(
        self, execution_id: uuid.UUID, user_id: uuid.UUID, project_id: uuid.UUID,
        request: ExecutionRequest,
    ) -> None:
        live = self._live[execution_id]
        started = time.monotonic()
        ticket = live.ticket
        try:
            try:
                await self._wait_turn(project_id, live)
                waited_ms = round((time.monotonic() - started) * 1000, 1)
                async with self.db.service() as conn:
                    await store.set_status(conn, execution_id, st.status(st.PROCESSING).code)
                await self._emit(project_id, live, {
                    "type": "execution.started", "execution_id": execution_id,
                    "language": request.language, "user_id": user_id,
                    "queue_position": NOT_QUEUED, "waited_ms": waited_ms,
                })
                try:
                    result = await self._execute(
                        execution_id, user_id, project_id, request, live
                    )
                except ExecutionError as exc:
                    result = ExecutionResult(st.INTERNAL_ERROR, message=exc.message)
            finally:
                self.scheduler.release(ticket)
            async with self.db.service() as conn:
                row = await store.finish_execution(
                    conn, execution_id, status=st.status(result.status_id).code,
                    stdout=result.stdout, stderr=result.stderr,
                    compile_output=result.compile_output, exit_code=result.exit_code,
                    time_ms=result.time_ms, wall_ms=result.wall_ms,
                    memory_kb=result.memory_kb, token=result.token, message=result.message,
                )
                await store.record_usage(
                    conn, user_id=user_id, project_id=project_id,
                    metadata={"execution_id": str(execution_id), "language": request.language,
                              "backend": self.backend.name,
                              "status": st.status(result.status_id).code,
                              "time_ms": result.time_ms,
                              "wall_ms": round((time.monotonic() - started) * 1000, 1)},
                )
            self.finished += 1
            self._observe(request.language, result, time.monotonic() - started)
            await self._emit(project_id, live, {
                "type": "execution.finished", "execution_id": execution_id,
                "execution": public(row or live.row),
            })
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("execution %s failed", execution_id)
            with contextlib.suppress(Exception):
                async with self.db.service() as conn:
                    row = await store.finish_execution(
                        conn, execution_id, status=st.status(st.INTERNAL_ERROR).code, stdout="",
                        stderr="", compile_output=None, exit_code=None, time_ms=None,
                        wall_ms=None, memory_kb=None, token=None,
                        message="internal error while running",
                    )
                await self._emit(project_id, live, {
                    "type": "execution.finished", "execution_id": execution_id,
                    "execution": public(row or live.row),
                })
        finally:
            self._end(live)
            self._tasks.pop(execution_id, None)
            # Keep finished runs briefly for late SSE subscribers, then drop them.
            asyncio.get_running_loop().call_later(30, self._live.pop, execution_id, None)

    def _observe(self, language: str, result: ExecutionResult, wall_s: float) -> None:
        if self.timings is None:
            return
        tags = (("language", language), ("backend", self.backend.name))
        self.timings.observe(EXECUTION, "execution.wall_time", wall_s * 1000, tags=tags)
        if result.time_ms is not None:
            self.timings.observe(EXECUTION, "execution.cpu_time", float(result.time_ms), tags=tags)

    async def _wait_turn(self, project_id: uuid.UUID, live: _Live) -> None:
        """Until the scheduler grants a slot, tell watchers where the run is in line."""
        ticket = live.ticket
        position = ticket.position
        while not ticket.granted:
            await self._emit(project_id, live, {
                "type": "execution.queued", "execution_id": ticket.run_id,
                "queue_position": position,
            })
            position = await ticket.next_position()

    async def _execute(
        self, execution_id: uuid.UUID, user_id: uuid.UUID, project_id: uuid.UUID,
        request: ExecutionRequest, live: _Live,
    ) -> ExecutionResult:
        async def emit(stream: str, text: str) -> None:
            await self._emit(project_id, live, {
                "type": "execution.output", "execution_id": execution_id,
                "stream": stream, "data": text,
            })

        # Secret values are masked before output is broadcast or stored.
        sink = MaskedOutput(emit, request.secret_values)
        try:
            result = await self._execute_backend(project_id, user_id, execution_id, request, sink)
        finally:
            await sink.flush()
        return sink.mask_result(result)

    async def _execute_backend(
        self, project_id: uuid.UUID, user_id: uuid.UUID, execution_id: uuid.UUID,
        request: ExecutionRequest, sink: OutputSink,
    ) -> ExecutionResult:
        if not isinstance(self.backend, LocalBackend):
            return await self.backend.execute(request, sink)
        backend = self.backend
        quota = await project_disk_quota(self.db, self.config, project_id)
        with backend.uids.hold(request.owner_key) as slot:
            uid = backend.sandbox.identity_for(slot).uid
            lock = self.workspaces.lock(project_id)
            async with backend.volumes.use(project_id, quota, uid) as volume:
                async with lock:
                    manifest: Manifest = await self.workspaces.materialize(project_id, uid)
                workdir = self.workspaces.path(project_id)
                result = await backend.execute(
                    replace(request, workdir=workdir, quota_exceeded=volume.over_quota), sink
                )
                async with lock:
                    report = await self.workspaces.sync_back(project_id, manifest, user_id, quota)
                    full = await self.workspaces.settle_quota(volume, report)
        if report.created or report.updated:
            log.info("execution %s brought back %d new and %d changed files", execution_id,
                     len(report.created), len(report.updated))
        return with_rejected_note(with_quota_note(result, full, report, quota), report)

    async def _emit(self, project_id: uuid.UUID, live: _Live, event: dict[str, Any]) -> None:
        live.events.append(event)
        for queue in live.listeners:
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()  # a slow listener loses the oldest output
            queue.put_nowait(event)
        projects = self.projects
        if projects is not None:
            try:
                await projects.publish(project_id, event)
            except Exception:
                log.exception("publishing %s to project %s failed", event["type"], project_id)

    def _end(self, live: _Live) -> None:
        live.done = True
        for queue in live.listeners:
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(None)
        live.listeners.clear()

    # -- reading ------------------------------------------------------------------------

    async def get(self, execution_id: uuid.UUID) -> dict[str, Any] | None:
        """The stored run, with its place in line while this process holds it."""
        async with self.db.service() as conn:
            row = await store.get_execution(conn, execution_id)
        live = self._live.get(execution_id)
        if row is not None and live is not None and not live.done:
            row["queue_position"] = live.ticket.position
        return row

    async def wait(self, execution_id: uuid.UUID, timeout: float | None = None) -> None:
        task = self._tasks.get(execution_id)
        if task is not None:
            await asyncio.wait_for(asyncio.shield(task), timeout)

    async def run_to_end(
        self, *, user_id: uuid.UUID, project_id: uuid.UUID, file_id: uuid.UUID | None,
        language: str | None, source: str | None, timeout_s: float,
    ) -> dict[str, Any]:
        """A run with the default limits, waited for up to ``timeout_s`` (the assistant's
        ``run_code`` tool); its public record, finished or not. ``ExecutionError`` when
        refused."""
        row = await self.submit(
            user_id=user_id, project_id=project_id, language=language, source=source,
            file_id=file_id, stdin="", limits=RunLimits(),
        )
        with contextlib.suppress(TimeoutError):
            await self.wait(row["id"], timeout_s)
        return public(await self.get(row["id"]) or row)

    async def events(self, execution_id: uuid.UUID) -> AsyncIterator[dict[str, Any]]:
        """Everything this process saw of the run, then live events until it ends. A run
        this process does not hold (finished long ago, or on another node) yields its
        stored record as one ``execution.finished``."""
        live = self._live.get(execution_id)
        if live is None:
            row = await self.get(execution_id)
            if row is not None:
                yield {"type": "execution.finished", "execution_id": execution_id,
                       "execution": public(row)}
            return
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(SUBSCRIBER_QUEUE)
        backlog = list(live.events)
        if not live.done:
            live.listeners.append(queue)
        try:
            for event in backlog:
                yield event
            if live.done:
                return
            while True:
                item = await queue.get()
                if item is None:
                    return
                yield item
        finally:
            if queue in live.listeners:
                live.listeners.remove(queue)


def public(row: dict[str, Any]) -> dict[str, Any]:
    """The API shape of a code_executions row (status with Judge0's id and wording)."""
    status = st.by_code(row["status"])
    return {
        "id": row["id"],
        "project_id": row.get("project_id"),
        "file_id": row.get("file_id"),
        "user_id": row.get("user_id"),
        "language": row["language"],
        "status": status.code,
        "status_id": status.id,
        "status_description": status.description,
        "finished": row.get("finished_at") is not None,
        # 1 = next to start, 0 = has its slot; None when finished or held by another node.
        "queue_position": row.get("queue_position"),
        "stdin": row.get("stdin"),
        "stdout": row.get("stdout"),
        "stderr": row.get("stderr"),
        "compile_output": row.get("compile_output"),
        "exit_code": row.get("exit_code"),
        "execution_time_ms": row.get("execution_time_ms"),
        "wall_time_ms": row.get("wall_time_ms"),
        "memory_kb": row.get("memory_kb"),
        "message": row.get("message"),
        "backend": row.get("backend"),
        "token": row.get("token"),
        "created_at": row.get("created_at"),
        "finished_at": row.get("finished_at"),
    }


def with_quota_note(
    result: ExecutionResult, full: bool, report: SyncReport, quota_bytes: int
) -> ExecutionResult:
    """Say so when the project's disk quota stopped the run or kept files from being saved;
    a run that failed because a write did (ENOSPC) is SIGXFSZ, as a file size limit is."""
    if not full and not report.over_quota:
        return result
    note = quota_message(quota_bytes, report)
    status_id = result.status_id
    if result.status_id in {st.RUNTIME_ERROR_NZEC, st.RUNTIME_ERROR_OTHER} and (
        st.disk_was_full(result.stderr[-st.OOM_TAIL_BYTES:])
    ):
        status_id = st.RUNTIME_ERROR_SIGXFSZ
    if result.message is None or result.message == "project disk quota exceeded":
        message = note  # nothing else to say, or the watcher stopped it: the note says why
    elif status_id != result.status_id:
        message = f"{note} ({result.message})"  # the quota is why it failed
    else:
        message = f"{result.message}; {note}"
    return replace(result, status_id=status_id, message=message)


def with_rejected_note(result: ExecutionResult, report: SyncReport) -> ExecutionResult:
    """Say which new files were not saved because of their names (the run itself stands)."""
    note = rejected_message(report)
    if note is None:
        return result
    return replace(result, message=f"{result.message}; {note}" if result.message else note)


def make_scheduler(config: ExecutionConfig) -> FairScheduler:
    """The fair queue, or the old global FIFO (``EXECUTION_QUEUE=fifo``, for comparison)."""
    slots = config.max_concurrent_runs
    if config.run_queue == "fifo":
        return FairScheduler(slots=slots, per_user=slots, per_project=slots)
    return FairScheduler(slots=slots, per_user=min(slots, config.max_runs_per_user),
                         per_project=min(slots, config.max_runs_per_project))


def _language_for(path: str) -> str | None:
    suffix = "." + path.rsplit(".", 1)[-1].lower() if "." in path else ""
    for language in (*BASE_LANGUAGES, JAVA, RUST, GO):
        if suffix in language.extensions:
            return language.id
    return None
