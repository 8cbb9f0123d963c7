"""OpenAI-compatible chat completions (OpenAI, Ollama, vLLM, llama.cpp servers).

``POST {base}/v1/chat/completions`` with ``stream: true`` and
``stream_options.include_usage``; chunks carry ``choices[0].delta.content`` and the last
one (empty ``choices``) carries ``usage``. The stream ends with ``data: [DONE]``.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

from ai.config import AIConfig
from ai.providers.base import ChatMessage, ProviderError, ProviderEvent, TextDelta, Usage
from ai.providers.http import HttpProvider
from ai.tokens import estimate_messages, estimate_tokens

RETRYABLE_STREAM_ERRORS = frozenset(
    {"server_error", "overloaded", "overloaded_error", "rate_limit_exceeded", "api_error"}
)


def chat_completions_url(base_url: str) -> str:
    base = base_url.rstrip("/")
    if base.endswith("/v1"):
        return base + "/chat/completions"
    return base + "/v1/chat/completions"


class OpenAICompatProvider(HttpProvider):
    def __init__(
        self, config: AIConfig, base_url: str, api_key: str | None, model: str,
        name: str = "openai",
    ) -> None:
        super().__init__(config)
        self.name = name
        self.model = model
        self.url = chat_completions_url(base_url)
        self.api_key = api_key

    async def _attempt(
        self, messages: list[ChatMessage], max_tokens: int
    ) -> AsyncIterator[ProviderEvent]:
        headers = {"content-type": "application/json"}
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        body = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in messages],
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": max_tokens,
        }
        usage: dict[str, Any] | None = None
        finish_reason: str | None = None
        model = self.model
        text_parts: list[str] = []
        done = False
        events = self.client.sse(self.url, headers, body)
        async with contextlib.aclosing(events):  # type: ignore[type-var]
            async for event in events:
                if event.data.strip() == "[DONE]":
                    done = True
                    break
                try:
                    chunk = json.loads(event.data)
                except ValueError as exc:
                    raise ProviderError(
                        "provider_protocol", "AI provider sent invalid JSON"
                    ) from exc
                if not isinstance(chunk, dict):
                    continue
                if "error" in chunk:
                    raise _stream_error(chunk["error"])
                model = str(chunk.get("model") or model)
                if isinstance(chunk.get("usage"), dict):
                    usage = chunk["usage"]
                for choice in chunk.get("choices") or ():
                    delta = choice.get("delta") or {}
                    content = delta.get("content")
                    if content:
                        text_parts.append(content)
                        yield TextDelta(content)
                    if choice.get("finish_reason"):
                        finish_reason = str(choice["finish_reason"])
        if not done and finish_reason is None:
            raise ProviderError(
                "stream_interrupted", "AI provider stream ended early", retryable=True
            )
        yield _usage(usage, messages, "".join(text_parts), finish_reason, model)


def _stream_error(err: Any) -> ProviderError:
    if not isinstance(err, dict):
        return ProviderError("provider_error", str(err))
    kind = str(err.get("type") or err.get("code") or "")
    message = str(err.get("message") or "AI provider error")
    if kind in {"insufficient_quota", "billing_error"}:
        return ProviderError("spend_limit", message)
    return ProviderError("provider_error", message, retryable=kind in RETRYABLE_STREAM_ERRORS)


def _usage(
    usage: dict[str, Any] | None,
    messages: list[ChatMessage],
    text: str,
    finish_reason: str | None,
    model: str,
) -> Usage:
    if usage and isinstance(usage.get("completion_tokens"), int):
        return Usage(
            int(usage.get("prompt_tokens") or 0),
            int(usage["completion_tokens"]),
            estimated=False,
            finish_reason=finish_reason,
            model=model,
        )
    return Usage(
        estimate_messages(m.content for m in messages),
        estimate_tokens(text),
        estimated=True,
        finish_reason=finish_reason,
        model=model,
    )
