"""The Judge0 client against a local server speaking Judge0's wire format."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from execution import status as st
from execution.backend import ExecutionError, ExecutionRequest, ExecutionResult
from execution.config import ExecutionConfig
from execution.judge0 import Judge0Backend
from execution.sandbox import Limits
from tests.fakes.judge0_server import FakeJudge0


@pytest.fixture
async def judge0() -> AsyncIterator[FakeJudge0]:
    server = FakeJudge0(auth_header="X-Judge0-Token", auth_token="s3cret")
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def client(judge0: FakeJudge0) -> AsyncIterator[Judge0Backend]:
    config = ExecutionConfig(
        backend="judge0",
        judge0_url=judge0.url,
        judge0_auth_header="X-Judge0-Token",
        judge0_auth_token="s3cret",
        judge0_poll_deadline_s=5,
    )
    backend = Judge0Backend(config)
    await backend.start()
    yield backend
    await backend.close()


def request(source: str, language: str = "python", stdin: str = "") -> ExecutionRequest:
    return ExecutionRequest(language, source, stdin, Limits.default(ExecutionConfig()))


async def collect(
    backend: Judge0Backend, req: ExecutionRequest
) -> tuple[ExecutionResult, list[str]]:
    seen: list[str] = []

    async def sink(stream: str, text: str) -> None:
        seen.append(text)

    return await backend.execute(req, sink), seen


async def test_language_map_comes_from_languages(client: Judge0Backend) -> None:
    languages = {lang["id"]: lang for lang in await client.languages()}
    assert languages["python"]["judge0_id"] == 71  # Python 3, not 2.7
    assert languages["c"]["judge0_id"] == 50  # the newest GCC
    assert {"javascript", "cpp", "bash", "java"} <= set(languages)
    assert "rust" not in languages


async def test_accepted_with_base64_output_containing_line_breaks(
    client: Judge0Backend, judge0: FakeJudge0
) -> None:
    result, streamed = await collect(client, request("print(1)", stdin="a\nb\nc"))
    assert result.status_id == st.ACCEPTED
    assert result.stdout == "c\nb\na\n" + "x" * 100 + "\n"
    assert result.time_ms == 12.0 and result.memory_kb == 3456
    assert result.token in judge0.submissions
    assert "".join(streamed) == result.stdout
    posts = [q for method, path, q in judge0.requests if method == "POST"]
    assert posts == [{"base64_encoded": "true", "wait": "false"}]
    polls = [q for method, path, q in judge0.requests if path == "/submissions/batch"]
    assert len(polls) >= 3  # in queue, processing, done
    assert all(q["base64_encoded"] == "true" and "status" in q["fields"] for q in polls)


async def test_compile_error(client: Judge0Backend) -> None:
    result, _ = await collect(client, request("int main() { COMPILE_ERROR }", "c"))
    assert result.status_id == st.COMPILATION_ERROR
    assert result.compile_output and "expected ';'" in result.compile_output


async def test_time_limit_exceeded(client: Judge0Backend) -> None:
    result, _ = await collect(client, request("while True: pass  # LOOP"))
    assert result.status_id == st.TIME_LIMIT_EXCEEDED


async def test_memory_limit_is_reported_as_such(client: Judge0Backend) -> None:
    """Judge0 says NZEC ("Exited with error status 137") when isolate's cgroup limit kills a
    run, and NZEC when a runtime fails to allocate: both are a memory limit here."""
    killed, _ = await collect(client, request("x = ' ' * 10**10  # MEMORYHOG"))
    assert killed.status_id == st.MEMORY_LIMIT_EXCEEDED, killed
    assert killed.message and killed.message.startswith("memory limit exceeded (256 MiB")
    refused, _ = await collect(client, request("x = ' ' * 10**10  # MEMORYERROR"))
    assert refused.status_id == st.MEMORY_LIMIT_EXCEEDED, refused
    assert "MemoryError" in refused.stderr


async def test_queue_full_is_an_infrastructure_error(
    client: Judge0Backend, judge0: FakeJudge0
) -> None:
    judge0.queue_full = True
    result, _ = await collect(client, request("print(1)"))
    assert result.status_id == st.INTERNAL_ERROR
    assert result.message == "infrastructure: Judge0 queue is full"
    assert client.health()["last_error"] == "Judge0 queue is full"


async def test_status_13_is_an_infrastructure_error(client: Judge0Backend) -> None:
    result, _ = await collect(client, request("print(1)  # BOXERROR"))
    assert result.status_id == st.INTERNAL_ERROR
    assert result.message and result.message.startswith("infrastructure: Judge0 internal error")
    assert "rb_sysopen" in result.message


async def test_unknown_language_is_refused(client: Judge0Backend) -> None:
    with pytest.raises(ExecutionError) as caught:
        await collect(client, request("fn main(){}", "rust"))
    assert caught.value.code == "unknown_language"


async def test_polling_gives_up_at_the_deadline(judge0: FakeJudge0) -> None:
    judge0.polls_until_done = 10_000
    config = ExecutionConfig(
        backend="judge0", judge0_url=judge0.url, judge0_auth_header="X-Judge0-Token",
        judge0_auth_token="s3cret", judge0_poll_deadline_s=0.4,
    )
    backend = Judge0Backend(config)
    await backend.start()
    try:
        result, _ = await collect(backend, request("print(1)"))
    finally:
        await backend.close()
    assert result.status_id == st.INTERNAL_ERROR
    assert result.message and "no result within" in result.message


async def test_concurrent_submissions_share_batch_polls(
    client: Judge0Backend, judge0: FakeJudge0
) -> None:
    import asyncio

    results = await asyncio.gather(
        *(collect(client, request("print(1)", stdin=str(i))) for i in range(6))
    )
    assert [r.stdout.splitlines()[0] for r, _ in results] == [str(i) for i in range(6)]
    batch_sizes = [len(q["tokens"].split(",")) for m, p, q in judge0.requests
                   if p == "/submissions/batch"]
    assert max(batch_sizes) > 1


async def test_wrong_auth_token_is_an_infrastructure_error(judge0: FakeJudge0) -> None:
    config = ExecutionConfig(backend="judge0", judge0_url=judge0.url,
                             judge0_auth_header="X-Judge0-Token", judge0_auth_token="wrong")
    backend = Judge0Backend(config)
    await backend.start()
    try:
        result, _ = await collect(backend, replace(request("print(1)")))
    finally:
        await backend.close()
    assert result.status_id == st.INTERNAL_ERROR
