"""The deployment job: pending -> building -> deploying -> success | failed | canceled.

One job per deployment row (``deployments.build``). Steps: copy the project's files into
the deployment's directory, read how it is served (``preview.spec``), install Python
packages (wheels, on the host), run the build in the sandbox, then hand the result to the
target: the built-in preview (start the app, switch the preview to it) or Vercel. Output
streams to the project channel as ``deployment.log`` events and is kept (the last
``PREVIEW_LOG_BYTES``) in ``deployments.logs``, secret values of the environment masked.

Cancel works at every stage: the API sets the row to ``canceled``; the job watches the row
and cancels its own steps (a sandboxed build is stopped with its whole process tree, an
app that was starting is stopped, the preview that was serving stays). A job that is run
again (a worker died) starts over from the copy: every step is idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from pydantic import BaseModel

import jobs
from execution.workspace import Manifest
from persistence import deployments as store
from persistence.crypto import Keyring
from persistence.db import Database
from persistence.environment import EnvironmentUnavailable, load_environment
from preview.config import PreviewConfig
from preview.files import DeploymentFiles, InstallFailed, install_python
from preview.logs import LogBuffer
from preview.process import AppFailed, Layout
from preview.runtime import BuildFailed, PreviewKey, PreviewRuntime
from preview.spec import AppSpec, SpecError, detect

log = logging.getLogger(__name__)

Publish = Callable[[uuid.UUID, dict[str, Any]], Awaitable[None]]
CANCEL_POLL_S = 0.25
# Failures a user can act on: their message is the deployment's error.
USER_ERRORS = (SpecError, BuildFailed, AppFailed, InstallFailed)


class TargetError(RuntimeError):
    """The target refused or failed the deployment (a clear message for the user)."""


class Target(Protocol):
    name: str
    builds_itself: bool  # True: the source is sent as is (Vercel builds it)

    async def deploy(self, build: Build) -> tuple[str, str | None]:
        """Publish the built files; return (url, the target's own deployment id)."""
        ...


class BuildInput(BaseModel):
    deployment_id: uuid.UUID


class Build:
    """What the steps of one deployment share."""

    def __init__(self, row: dict[str, Any], layout: Layout, spec: AppSpec | None,
                 env: dict[str, str], logs: LogBuffer, workspace_id: uuid.UUID | None,
                 files: DeploymentFiles | None = None, manifest: Manifest | None = None) -> None:
        self.row = row
        self.files = files  # for live reload (development previews)
        self.manifest = manifest
        self.id: uuid.UUID = row["id"]
        self.key = PreviewKey(row["project_id"], row["environment"])
        self.layout = layout
        self.spec = spec
        self.env = env
        self.logs = logs
        self.workspace_id = workspace_id


class ReleaseError(RuntimeError):
    """A deployment cannot be served again (its files are gone, or its app fails)."""


class Deployer:
    """The jobs' resource: runs builds, owns nothing long-lived but the runtime's previews."""

    def __init__(self, db: Database, keyring: Keyring, runtime: PreviewRuntime,
                 config: PreviewConfig, publish: Publish,
                 targets: dict[str, Target] | None = None) -> None:
        self.db = db
        self.keyring = keyring
        self.runtime = runtime
        self.config = config
        self.publish = publish
        self.targets: dict[str, Target] = {"preview": PreviewTarget(runtime), **(targets or {})}

    async def _event(self, project_id: uuid.UUID, kind: str, **body: Any) -> None:
        try:
            await self.publish(project_id, {"type": kind, **body})
        except Exception:
            log.exception("could not publish %s", kind)

    async def run(self, deployment_id: uuid.UUID) -> str:
        async with self.db.service() as conn:
            row = await store.get_any(conn, deployment_id)
            if row is None or row["status"] in store.FINISHED:
                return row["status"] if row else "missing"
            if not await store.advance(conn, deployment_id, "building", store.UNFINISHED):
                return "canceled"
        project_id: uuid.UUID = row["project_id"]
        await self._event(project_id, "deployment.status", deployment_id=str(deployment_id),
                          status="building", environment=row["environment"])

        async def stream(text: str) -> None:
            await self._event(project_id, "deployment.log", deployment_id=str(deployment_id),
                              text=text)

        started = time.monotonic()
        logs = LogBuffer(self.config.log_bytes, listener=stream)
        steps = asyncio.create_task(self._steps(row, logs))
        watcher = asyncio.create_task(self._watch_cancel(deployment_id, steps))
        status, error, url, external = "failed", None, None, None
        try:
            url, external = await steps
            status = "success"
        except asyncio.CancelledError:
            if not watcher.done() or watcher.result() is not True:
                raise  # the worker is stopping: the job is released and runs again
            status = "canceled"
            await logs.line("canceled")
        except (*USER_ERRORS, TargetError) as exc:
            error = str(exc)
            await logs.line(f"error: {error}")
        except Exception as exc:
            log.exception("deployment %s failed", deployment_id)
            error = f"internal error: {type(exc).__name__}"
            await logs.line(f"error: {error}")
        finally:
            watcher.cancel()
            await asyncio.gather(watcher, return_exceptions=True)
        build_ms = round((time.monotonic() - started) * 1000)
        await logs.flush()
        async with self.db.service() as conn:
            if status == "canceled":
                await store.save_logs(conn, deployment_id, logs.text())
            else:
                finished = await store.finish(conn, deployment_id, status=status,
                                              logs=logs.text(), error=error, build_time_ms=build_ms,
                                              url=url, external_id=external)
                if not finished:
                    status = "canceled"  # the cancel won the race at the very end
                    await store.save_logs(conn, deployment_id, logs.text())
                elif status == "success":
                    await store.add_release(conn, project_id=project_id,
                                            environment=row["environment"],
                                            deployment_id=deployment_id, action="deploy",
                                            user_id=row["deployed_by"])
        await self._event(project_id, "deployment.status", deployment_id=str(deployment_id),
                          status=status, environment=row["environment"], url=url, error=error,
                          build_time_ms=build_ms)
        return status

    async def serve_again(self, row: dict[str, Any]) -> None:
        """Promote / roll back: make a successful deployment the one its environment serves."""
        target = self.targets.get(row["target"])
        if target is None:
            raise ReleaseError(f"the {row['target']} target is not configured on this server")
        promote = getattr(target, "promote", None)
        if promote is not None:
            try:
                await promote(row)
            except TargetError as exc:
                raise ReleaseError(str(exc)) from None
            return
        key = PreviewKey(row["project_id"], row["environment"])
        layout = self.runtime.layout(key, row["id"])
        if not layout.app.is_dir():
            raise ReleaseError(f"the files of this deployment are no longer kept (the last "
                               f"{self.config.kept_deployments} are): deploy again")
        async with self.db.service() as conn:
            try:
                environment = await load_environment(conn, self.keyring, key.project_id,
                                                     key.environment)
            except EnvironmentUnavailable as exc:
                raise ReleaseError(str(exc)) from None
        logs = LogBuffer(self.config.log_bytes, environment.secret_values)
        try:
            spec = await asyncio.to_thread(detect, layout.app)
            env = {**environment.variables, "NODE_ENV": "production"}
            await self.runtime.activate(key, row["id"], layout, spec, env, logs)
        except USER_ERRORS as exc:
            raise ReleaseError(f"{exc}\n{logs.text()[-2000:]}") from None

    async def _watch_cancel(self, deployment_id: uuid.UUID, steps: asyncio.Task[Any]) -> bool:
        while not steps.done():
            await asyncio.sleep(CANCEL_POLL_S)
            async with self.db.service() as conn:
                if await store.status(conn, deployment_id) == "canceled":
                    steps.cancel()
                    return True
        return False

    async def _steps(self, row: dict[str, Any], logs: LogBuffer) -> tuple[str, str | None]:
        key = PreviewKey(row["project_id"], row["environment"])
        target = self.targets.get(row["target"])
        if target is None:
            raise TargetError(f"the {row['target']} target is not configured on this server")
        async with self.db.service() as conn:
            try:
                environment = await load_environment(conn, self.keyring, key.project_id,
                                                     key.environment)
            except EnvironmentUnavailable as exc:
                raise BuildFailed(str(exc)) from None
            workspace_id = await store.workspace_of(conn, key.project_id)
        logs.mask(environment.secret_values)
        await logs.line(f"deployment {row['id']} to {row['target']} ({key.environment})")
        layout, files, manifest = await self.runtime.copy(key, row["id"])
        await logs.line(f"copied {len(manifest.entries)} files")
        env = {**environment.variables,
               "NODE_ENV": "development" if key.environment == "development" else "production"}
        spec: AppSpec | None = None
        if not getattr(target, "builds_itself", False):
            spec = await asyncio.to_thread(detect, layout.app)
            await logs.line(spec.describe())
            async with asyncio.timeout(self.config.build_timeout_s):
                await install_python(spec.requirements, layout.deps, logs,
                                     self.config.build_timeout_s)
                await self.runtime.build(key, layout, spec, env, logs)
        async with self.db.service() as conn:
            if not await store.advance(conn, row["id"], "deploying", ("building",), logs.text()):
                raise asyncio.CancelledError
        await self._event(key.project_id, "deployment.status", deployment_id=str(row["id"]),
                          status="deploying", environment=key.environment)
        build = Build(row, layout, spec, env, logs, workspace_id, files, manifest)
        return await target.deploy(build)


class PreviewTarget:
    name = "preview"
    builds_itself = False

    def __init__(self, runtime: PreviewRuntime) -> None:
        self.runtime = runtime

    async def deploy(self, build: Build) -> tuple[str, str | None]:
        assert build.spec is not None
        await self.runtime.activate(
            build.key, build.id, build.layout, build.spec, build.env, build.logs,
            files=build.files, manifest=build.manifest)
        await build.logs.line(f"serving at {self.runtime.url(build.key)}")
        return self.runtime.url(build.key), None


@jobs.job("deployments.build", input=BuildInput, job_type="file_processing", max_attempts=2,
          timeout=1800)
async def build_deployment(ctx: jobs.JobContext, payload: BuildInput) -> dict[str, str]:
    deployer = ctx.resource(Deployer)
    return {"status": await deployer.run(payload.deployment_id)}


JOBS = [build_deployment]

