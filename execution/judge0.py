"""Judge0 CE over its documented HTTP API (aiohttp).

Always ``base64_encoded=true`` (the default flipped between versions; output may contain
line breaks inside the base64), never ``wait=true``; submissions are polled in batches
(``GET /submissions/batch``) with backoff and a deadline. ``503 {"error":"queue is full"}``
and status 13 are infrastructure failures, reported as internal errors with a message.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
from typing import Any

import aiohttp

from execution import status as st
from execution.backend import ExecutionError, ExecutionRequest, ExecutionResult
from execution.config import ExecutionConfig
from execution.languages import BASE_LANGUAGES, GO, JAVA, RUST, Language
from execution.sandbox import OutputSink

FIELDS = "token,stdout,stderr,compile_output,message,status,time,memory,exit_code"
KNOWN = (*BASE_LANGUAGES, JAVA, RUST, GO)
POLL_FIRST_S = 0.05
POLL_MAX_S = 1.0
BATCH_MAX = 20
RUNTIME_ERRORS = frozenset(
    {st.RUNTIME_ERROR_SIGSEGV, st.RUNTIME_ERROR_NZEC, st.RUNTIME_ERROR_OTHER}
)
# A run whose peak reached this share of its memory limit and then died was stopped by it.
OOM_PEAK_SHARE = 0.95

log = logging.getLogger(__name__)


class Judge0Unavailable(Exception):
    """The Judge0 service failed (not the submitted program)."""


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def unb64(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        # b64decode drops characters outside the alphabet: Judge0 wraps lines at 60.
        return base64.b64decode(value).decode("utf-8", errors="replace")
    except (binascii.Error, ValueError):
        return value


class Judge0Backend:
    name = "judge0"

    def __init__(self, config: ExecutionConfig) -> None:
        if not config.judge0_url:
            raise ValueError("the judge0 backend needs JUDGE0_URL")
        self.config = config
        self.base_url = config.judge0_url.rstrip("/")
        self.session: aiohttp.ClientSession | None = None
        self.language_ids: dict[str, tuple[int, str]] = {}
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._poller: asyncio.Task[None] | None = None
        self.last_error: str | None = None

    async def start(self) -> None:
        headers = {}
        if self.config.judge0_auth_token:
            headers[self.config.judge0_auth_header] = self.config.judge0_auth_token
        self.session = aiohttp.ClientSession(
            headers=headers, timeout=aiohttp.ClientTimeout(total=30, connect=5)
        )

    async def close(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.gather(self._poller, return_exceptions=True)
        for future in self._pending.values():
            if not future.done():
                future.set_exception(Judge0Unavailable("shutting down"))
        self._pending.clear()
        if self.session is not None:
            await self.session.close()

    def health(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "url": self.base_url,
            "languages": sorted(self.language_ids),
            "pending": len(self._pending),
            "last_error": self.last_error,
        }

    def _http(self) -> aiohttp.ClientSession:
        if self.session is None:
            raise RuntimeError("Judge0Backend.start() was not awaited")
        return self.session

    async def _load_languages(self) -> None:
        if self.language_ids:
            return
        async with self._http().get(f"{self.base_url}/languages") as response:
            if response.status != 200:
                raise Judge0Unavailable(f"GET /languages answered {response.status}")
            listed = await response.json()
        ids: dict[str, tuple[int, str]] = {}
        for language in KNOWN:
            matches = [
                (int(item["id"]), str(item["name"]))
                for item in listed
                if any(str(item.get("name", "")).startswith(p) for p in language.judge0_prefixes)
                and not item.get("is_archived", False)
            ]
            if matches:
                ids[language.id] = max(matches)  # the newest (highest id) version
        self.language_ids = ids

    async def languages(self) -> list[dict[str, Any]]:
        try:
            await self._load_languages()
        except (aiohttp.ClientError, TimeoutError, Judge0Unavailable) as exc:
            self.last_error = str(exc) or type(exc).__name__
            return []
        by_id: dict[str, Language] = {lang.id: lang for lang in KNOWN}
        return [
            {**by_id[key].public(), "name": name, "judge0_id": judge0_id}
            for key, (judge0_id, name) in self.language_ids.items()
        ]

    async def execute(self, request: ExecutionRequest, sink: OutputSink) -> ExecutionResult:
        try:
            await self._load_languages()
            if request.language not in self.language_ids:
                raise ExecutionError(
                    "unknown_language", f"language {request.language!r} is not available"
                )
            token = await self._submit(request)
            result = await self._wait(token)
        except Judge0Unavailable as exc:
            self.last_error = str(exc)
            return ExecutionResult(st.INTERNAL_ERROR, message=f"infrastructure: {exc}")
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.last_error = str(exc) or type(exc).__name__
            return ExecutionResult(
                st.INTERNAL_ERROR, message=f"infrastructure: Judge0 unreachable ({self.last_error})"
            )
        converted = self._convert(result, token, request.limits.memory_kb)
        if converted.stdout:
            await sink("stdout", converted.stdout)
        if converted.stderr:
            await sink("stderr", converted.stderr)
        return converted

    async def _submit(self, request: ExecutionRequest) -> str:
        language_id, _ = self.language_ids[request.language]
        limits = request.limits
        body = {
            "source_code": b64(request.source),
            "language_id": language_id,
            "stdin": b64(request.stdin),
            "cpu_time_limit": limits.cpu_time_s,
            "wall_time_limit": limits.wall_time_s,
            "memory_limit": limits.memory_kb,
            "max_processes_and_or_threads": limits.processes,
            "max_file_size": limits.file_size_kb,
        }
        url = f"{self.base_url}/submissions"
        params = {"base64_encoded": "true", "wait": "false"}
        async with self._http().post(url, params=params, json=body) as response:
            payload = await _json(response)
            if response.status == 503:
                raise Judge0Unavailable(f"Judge0 {payload.get('error', 'unavailable')}")
            if response.status not in (200, 201) or "token" not in payload:
                raise Judge0Unavailable(f"submission refused ({response.status}: {payload})")
            return str(payload["token"])

    async def _wait(self, token: str) -> dict[str, Any]:
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[token] = future
        if self._poller is None or self._poller.done():
            self._poller = asyncio.create_task(self._poll(), name="judge0-poller")
        try:
            return await asyncio.wait_for(
                asyncio.shield(future), self.config.judge0_poll_deadline_s
            )
        except TimeoutError:
            raise Judge0Unavailable(
                f"no result within {self.config.judge0_poll_deadline_s:g} s"
            ) from None
        finally:
            self._pending.pop(token, None)

    async def _poll(self) -> None:
        """One task polls every pending token in batches, backing off while nothing ends."""
        delay = POLL_FIRST_S
        while self._pending:
            await asyncio.sleep(delay)
            tokens = list(self._pending)[:BATCH_MAX]
            try:
                finished = await self._fetch(tokens)
            except (aiohttp.ClientError, TimeoutError, Judge0Unavailable) as exc:
                self.last_error = str(exc) or type(exc).__name__
                log.warning("judge0 poll failed: %s", self.last_error)
                delay = min(delay * 2, POLL_MAX_S)
                continue
            for item in finished:
                future = self._pending.get(str(item.get("token")))
                if future is not None and not future.done():
                    future.set_result(item)
            delay = POLL_FIRST_S if finished else min(delay * 1.5, POLL_MAX_S)

    async def _fetch(self, tokens: list[str]) -> list[dict[str, Any]]:
        params = {"tokens": ",".join(tokens), "base64_encoded": "true", "fields": FIELDS}
        url = f"{self.base_url}/submissions/batch"
        async with self._http().get(url, params=params) as response:
            payload = await _json(response)
            if response.status != 200:
                raise Judge0Unavailable(f"batch poll answered {response.status}")
        done = []
        for item in payload.get("submissions") or []:
            if item is None:
                continue
            status_id = int((item.get("status") or {}).get("id", st.IN_QUEUE))
            if status_id >= st.ACCEPTED:
                done.append(item)
        return done

    def _convert(self, item: dict[str, Any], token: str, memory_limit_kb: int) -> ExecutionResult:
        status_id = int((item.get("status") or {}).get("id", st.INTERNAL_ERROR))
        if status_id not in st.STATUSES:
            status_id = st.INTERNAL_ERROR
        message = unb64(item.get("message"))
        if status_id == st.INTERNAL_ERROR:
            message = f"infrastructure: Judge0 internal error ({message or 'no message'})"
        time_s = item.get("time")
        memory = item.get("memory")
        exit_code = item.get("exit_code")
        stderr = unb64(item.get("stderr")) or ""
        if status_id in RUNTIME_ERRORS and (
            (memory is not None and int(memory) >= memory_limit_kb * OOM_PEAK_SHARE)
            or st.allocation_failed(stderr)
        ):
            # Judge0 has no memory status: isolate's cgroup kills at the limit (SIGKILL,
            # "Exited with error status 137") with the peak at the limit, or the runtime
            # fails to allocate and says so.
            status_id = st.MEMORY_LIMIT_EXCEEDED
            message = f"memory limit exceeded ({memory_limit_kb / 1024:g} MiB; Judge0: {message})"
        return ExecutionResult(
            status_id,
            stdout=unb64(item.get("stdout")) or "",
            stderr=stderr,
            compile_output=unb64(item.get("compile_output")),
            exit_code=int(exit_code) if exit_code is not None else None,
            time_ms=round(float(time_s) * 1000, 3) if time_s is not None else None,
            memory_kb=int(memory) if memory is not None else None,
            token=token,
            message=message,
        )


async def _json(response: aiohttp.ClientResponse) -> dict[str, Any]:
    with contextlib.suppress(aiohttp.ContentTypeError, ValueError):
        data = await response.json(content_type=None)
        if isinstance(data, dict):
            return data
    return {}

