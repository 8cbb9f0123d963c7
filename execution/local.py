"""The local backend: compile (when needed) and run in the bubblewrap sandbox."""

from __future__ import annotations

import asyncio
import signal
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from execution import disk
from execution import status as st
from execution.backend import ExecutionError, ExecutionRequest, ExecutionResult
from execution.config import ExecutionConfig
from execution.disk import BUILDS
from execution.languages import VERSION_COMMANDS, Language, Toolchains, candidates, parse_version
from execution.sandbox import (
    BUILD,
    WORKSPACE,
    Bind,
    Limits,
    OutputSink,
    RunResult,
    Sandbox,
    UidPool,
)
from execution.volumes import ProjectVolumes


def _text(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def out_of_memory(result: RunResult) -> bool:
    """The run failed because an allocation did (a clean exit is not a failure)."""
    failed = result.term_signal is not None or bool(result.exit_code)
    return failed and st.allocation_failed(_text(result.stderr))


def classify(result: RunResult, limits: Limits) -> tuple[int, str | None]:
    """Judge0 status id (and a note) for a finished run."""
    if result.timed_out or result.cpu_exceeded:
        return st.TIME_LIMIT_EXCEEDED, "time limit exceeded"
    if result.stopped:
        return st.RUNTIME_ERROR_SIGXFSZ, "project disk quota exceeded"
    if result.output_capped:
        # Judge0 writes output to a size-limited file: going past it is SIGXFSZ there too.
        return st.RUNTIME_ERROR_SIGXFSZ, "output limit exceeded"
    if out_of_memory(result):
        return st.MEMORY_LIMIT_EXCEEDED, f"memory limit exceeded ({_mib(limits.memory_kb)})"
    if result.term_signal is not None:
        try:
            sig = signal.Signals(result.term_signal)
        except ValueError:
            return st.RUNTIME_ERROR_OTHER, f"killed by signal {result.term_signal}"
        return st.SIGNAL_STATUS.get(sig, st.RUNTIME_ERROR_OTHER), f"killed by {sig.name}"
    if result.exit_code == 126:
        return st.EXEC_FORMAT_ERROR, "cannot execute"
    if result.exit_code:
        return st.RUNTIME_ERROR_NZEC, f"exited with status {result.exit_code}"
    return st.ACCEPTED, None


def _mib(kib: int) -> str:
    return f"{kib / 1024:g} MiB"


class LocalBackend:
    name = "sandbox"

    def __init__(self, config: ExecutionConfig) -> None:
        self.config = config
        self.sandbox = Sandbox(config)
        self.uids = UidPool(config.sandbox_uid_count - 1)  # the last uid is for checks
        self.toolchains = Toolchains({})
        self._ready: asyncio.Task[None] | None = None
        self.build_root = config.workdir_root / ".build"
        self.volumes = ProjectVolumes(config)

    async def start(self) -> None:
        """Nothing to do up front: the sandbox check and toolchain detection run on first
        use (every app start in the test suite would otherwise pay for them)."""

    @property
    def detected(self) -> bool:
        return self._ready is not None and self._ready.done()

    def start_detection(self) -> None:
        self._detection()

    def _detection(self) -> asyncio.Task[None]:
        if self._ready is None:
            self._ready = asyncio.create_task(self._detect(), name="sandbox-toolchains")
        return self._ready

    def _prepare_dirs(self) -> None:
        # Parents must be traversable (not readable) by the sandbox uids: bwrap binds as them.
        for path in (self.config.workdir_root, self.build_root):
            path.mkdir(parents=True, exist_ok=True)
            path.chmod(0o711)

    async def _detect(self) -> None:
        await asyncio.to_thread(self._prepare_dirs)
        await self.sandbox.check(self.build_root)
        if self.sandbox.problem is not None:
            return
        found = await asyncio.to_thread(candidates)
        checked = await asyncio.gather(*(self._verify(lang) for lang in found))
        self.toolchains = Toolchains({lang.id: lang for lang in checked if lang is not None})

    async def _verify(self, language: Language) -> Language | None:
        argv = list(VERSION_COMMANDS.get(language.id, ("/bin/true",)))
        limits = Limits.for_compile(self.config)
        identity = self.sandbox.identity_for(self.config.sandbox_uid_count - 1)
        binds = list(language.binds)
        try:
            result = await self.sandbox.run(argv, binds=binds, limits=limits,
                                            identity=identity, cwd="/", env=language.env)
        except OSError:
            return None
        if result.exit_code != 0:
            return None
        version = parse_version(language.id, _text(result.stdout or result.stderr))
        return replace(language, version=version)

    async def ready(self) -> None:
        await asyncio.shield(self._detection())

    async def close(self) -> None:
        if self._ready is not None and not self._ready.done():
            self._ready.cancel()
            await asyncio.gather(self._ready, return_exceptions=True)
        await self.volumes.close()

    async def languages(self) -> list[dict[str, Any]]:
        await self.ready()
        return [lang.public() for lang in self.toolchains.languages.values()]

    def health(self) -> dict[str, Any]:
        problem = self.sandbox.problem
        return {
            "backend": self.name,
            "ok": problem is None,
            "state": "unavailable" if problem else "ready" if self.detected else "unchecked",
            "reason": problem,
            **self.sandbox.health(),
            **self.volumes.health(),
            "checked": self.detected,
            "languages": sorted(self.toolchains.languages),
        }

    async def execute(self, request: ExecutionRequest, sink: OutputSink) -> ExecutionResult:
        await self.ready()
        if self.sandbox.problem is not None:
            return ExecutionResult(st.INTERNAL_ERROR, message=self.sandbox.problem)
        language = self.toolchains.languages.get(request.language)
        if language is None:
            raise ExecutionError(
                "unknown_language", f"language {request.language!r} is not available"
            )
        with self.uids.hold(request.owner_key) as slot:
            identity = self.sandbox.identity_for(slot)
            # In a project's workdir the build goes inside it, so its quota covers what the
            # program writes to /build too (sync_back ignores the directory).
            root = self.build_root if request.workdir is None else request.workdir
            parts = [uuid.uuid4().hex] if request.workdir is None else [BUILDS, uuid.uuid4().hex]
            files = {}
            if request.source_path is None or request.workdir is None:
                files[language.source_name] = request.source.encode()
            await asyncio.to_thread(disk.make_scratch, root, parts, identity.uid, files)
            try:
                return await self._compile_and_run(
                    request, language, root.joinpath(*parts), identity, sink
                )
            finally:
                await asyncio.to_thread(disk.remove_scratch, root, parts)

    async def _compile_and_run(
        self, request: ExecutionRequest, language: Language, build: Path, identity: Any,
        sink: OutputSink,
    ) -> ExecutionResult:
        binds = [Bind(build, BUILD, writable=True), *language.binds]
        cwd = BUILD
        if request.workdir is not None:
            binds.insert(0, Bind(request.workdir, WORKSPACE, writable=True))
            cwd = WORKSPACE
        if request.source_path is not None and request.workdir is not None:
            source = f"{WORKSPACE}/{request.source_path.lstrip('/')}"
        else:
            source = f"{BUILD}/{language.source_name}"
        compile_output: str | None = None
        if language.compile is not None:
            built = await self.sandbox.run(
                language.command(language.compile, source), binds=binds,
                limits=Limits.for_compile(self.config), identity=identity,
                env={**request.env, **language.env}, cwd=cwd, stop=request.quota_exceeded,
            )
            compile_output = _text(built.stdout + built.stderr)
            if built.exit_code != 0 or built.timed_out:
                note = "compilation timed out" if built.timed_out else "compilation failed"
                return ExecutionResult(
                    st.COMPILATION_ERROR, compile_output=compile_output,
                    exit_code=built.exit_code, message=note,
                )
        limits = request.limits
        if limits.processes < language.min_processes:
            limits = replace(limits, processes=language.min_processes)
        ran = await self.sandbox.run(
            language.command(language.run, source), binds=binds, limits=limits,
            identity=identity, stdin=request.stdin.encode(), sink=sink,
            env={**request.env, **language.env}, cwd=cwd, stop=request.quota_exceeded,
        )
        status_id, run_note = classify(ran, limits)
        return ExecutionResult(
            status_id,
            stdout=_text(ran.stdout),
            stderr=_text(ran.stderr),
            compile_output=compile_output,
            exit_code=ran.exit_code,
            time_ms=round(ran.cpu_ms, 3),
            wall_ms=round(ran.wall_ms, 3),
            memory_kb=ran.memory_kb,
            message=run_note,
        )
