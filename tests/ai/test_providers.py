"""Provider clients against fake servers speaking the OpenAI and Anthropic wire formats."""

from __future__ import annotations

import asyncio
import contextlib
import time

import pytest

from ai.config import AIConfig
from ai.providers.anthropic import AnthropicProvider
from ai.providers.base import ChatMessage, ProviderError, ProviderEvent, TextDelta, Usage
from ai.providers.openai_compat import OpenAICompatProvider
from tests.fakes import anthropic_server, openai_server
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.sse_server import Script, split_bytes

PROMPT = [ChatMessage("system", "be brief"), ChatMessage("user", "hi")]


def openai(server: FakeOpenAI, **overrides: object) -> OpenAICompatProvider:
    config = AIConfig(base_url=server.url, api_key="sk-fake", model="gpt-fake-1",
                      retry_base_s=0.05, **overrides)  # type: ignore[arg-type]
    return OpenAICompatProvider(config, server.url, "sk-fake", "gpt-fake-1")


def anthropic(server: FakeAnthropic) -> AnthropicProvider:
    return AnthropicProvider(AIConfig(anthropic_api_key="sk-ant-fake",
                                      anthropic_base_url=server.url, retry_base_s=0.05))


async def collect(provider: OpenAICompatProvider | AnthropicProvider) -> list[ProviderEvent]:
    try:
        return [event async for event in provider.stream(PROMPT, max_tokens=64)]
    finally:
        await provider.close()


def text_of(events: list[ProviderEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def usage_of(events: list[ProviderEvent]) -> Usage:
    assert isinstance(events[-1], Usage)
    return events[-1]


async def test_openai_stream_with_utf8_split_across_every_chunk(fake_openai: FakeOpenAI) -> None:
    pieces = ["Grüße ", "你好 ", "🚀🚀", " done"]
    raw = b"".join(openai_server.stream(pieces))
    fake_openai.play(Script(chunks=split_bytes(raw, 3)))
    events = await collect(openai(fake_openai))
    assert text_of(events) == "".join(pieces)
    assert usage_of(events) == Usage(11, 7, estimated=False, finish_reason="stop",
                                     model="gpt-fake-1")
    request = fake_openai.requests[0]
    assert request.body["stream"] is True
    assert request.body["stream_options"] == {"include_usage": True}
    assert request.body["messages"][1] == {"role": "user", "content": "hi"}


async def test_openai_line_longer_than_aiohttp_limit(fake_openai: FakeOpenAI) -> None:
    long_piece = "λ" * 100_000  # 200 KB of UTF-8 on one SSE line
    fake_openai.play(Script(chunks=split_bytes(
        b"".join(openai_server.stream(["a", long_piece, "b"], done=b"data:[DONE]\r\n\r\n")),
        4093)))
    events = await collect(openai(fake_openai))
    assert text_of(events) == "a" + long_piece + "b"


async def test_openai_missing_usage_is_estimated(fake_openai: FakeOpenAI) -> None:
    fake_openai.play(Script(chunks=openai_server.stream(["one two three"], usage=None)))
    usage = usage_of(await collect(openai(fake_openai)))
    assert usage.estimated is True
    assert usage.output_tokens > 0 and usage.input_tokens > 0


async def test_openai_429_then_success_honours_retry_after(fake_openai: FakeOpenAI) -> None:
    fake_openai.play(openai_server.rate_limited("0.2"), Script(
        chunks=openai_server.stream(["ok"])))
    events = await collect(openai(fake_openai))
    assert text_of(events) == "ok"
    first, second = fake_openai.requests
    assert second.at - first.at >= 0.19


async def test_openai_insufficient_quota_is_not_retried(fake_openai: FakeOpenAI) -> None:
    fake_openai.play(openai_server.insufficient_quota(),
                     Script(chunks=openai_server.stream(["never"])))
    with pytest.raises(ProviderError) as caught:
        await collect(openai(fake_openai))
    assert caught.value.code == "spend_limit"
    assert len(fake_openai.requests) == 1


async def test_openai_error_after_first_token_is_not_retried(fake_openai: FakeOpenAI) -> None:
    fake_openai.play(Script(chunks=openai_server.mid_stream_error(["partial "])),
                     Script(chunks=openai_server.stream(["never"])))
    seen: list[str] = []
    provider = openai(fake_openai)
    with pytest.raises(ProviderError) as caught:
        async for event in provider.stream(PROMPT, max_tokens=8):
            if isinstance(event, TextDelta):
                seen.append(event.text)
    await provider.close()
    assert seen == ["partial "]
    assert caught.value.code == "provider_error"
    assert len(fake_openai.requests) == 1


async def test_openai_error_before_first_token_is_retried(fake_openai: FakeOpenAI) -> None:
    fake_openai.play(Script(chunks=openai_server.mid_stream_error([])),
                     Script(status=503, body=openai_server.error_body("busy", "server_error")),
                     Script(chunks=openai_server.stream(["fine"])))
    assert text_of(await collect(openai(fake_openai))) == "fine"
    assert len(fake_openai.requests) == 3


async def test_openai_cut_stream_after_tokens_fails_partway(fake_openai: FakeOpenAI) -> None:
    fake_openai.play(Script(chunks=[openai_server.chunk("half")]))
    provider = openai(fake_openai)
    seen: list[str] = []
    with pytest.raises(ProviderError) as caught:
        async for event in provider.stream(PROMPT, max_tokens=8):
            if isinstance(event, TextDelta):
                seen.append(event.text)
    await provider.close()
    assert seen == ["half"] and caught.value.code == "stream_interrupted"


async def test_cancelling_closes_the_upstream_connection(fake_openai: FakeOpenAI) -> None:
    fake_openai.play(Script(chunks=openai_server.stream([f"t{i} " for i in range(400)]),
                            delay_s=0.01))
    provider = openai(fake_openai)
    first = asyncio.Event()

    async def consume() -> None:
        async for event in provider.stream(PROMPT, max_tokens=8):
            if isinstance(event, TextDelta):
                first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), 5)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await asyncio.wait_for(fake_openai.disconnected.wait(), 5)
    assert fake_openai.completed == 0
    await provider.close()


async def test_anthropic_event_sequence(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.play(Script(chunks=split_bytes(
        b"".join(anthropic_server.stream(["Hel", "lo ", "wörld"])), 5)))
    events = await collect(anthropic(fake_anthropic))
    assert text_of(events) == "Hello wörld"
    assert usage_of(events) == Usage(25, 6, estimated=False, finish_reason="end_turn",
                                     model="claude-fake-1")
    request = fake_anthropic.requests[0]
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert request.body["system"] == "be brief"
    assert request.body["messages"] == [{"role": "user", "content": "hi"}]


async def test_anthropic_overloaded_then_success(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.play(anthropic_server.overloaded("0.1"),
                        Script(chunks=[anthropic_server.error_event()]),
                        Script(chunks=anthropic_server.stream(["ok"])))
    start = time.monotonic()
    assert text_of(await collect(anthropic(fake_anthropic))) == "ok"
    assert len(fake_anthropic.requests) == 3
    assert time.monotonic() - start >= 0.1


async def test_anthropic_mid_stream_error_after_text(fake_anthropic: FakeAnthropic) -> None:
    chunks = [*anthropic_server.stream(["a", "b"])[:5], anthropic_server.error_event()]
    fake_anthropic.play(Script(chunks=chunks))
    with pytest.raises(ProviderError) as caught:
        await collect(anthropic(fake_anthropic))
    assert caught.value.message == "Overloaded"
    assert len(fake_anthropic.requests) == 1


async def test_anthropic_missing_usage_is_estimated(fake_anthropic: FakeAnthropic) -> None:
    fake_anthropic.play(Script(chunks=anthropic_server.stream(["x y z"], with_usage=False)))
    usage = usage_of(await collect(anthropic(fake_anthropic)))
    assert usage.estimated is True and usage.output_tokens > 0
