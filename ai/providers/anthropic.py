"""Anthropic Messages API, streaming.

``POST {base}/v1/messages`` with ``x-api-key`` and ``anthropic-version``; the stream is
``message_start`` (input tokens) -> ``content_block_start`` -> ``content_block_delta``
(``text_delta``)... -> ``content_block_stop`` -> ``message_delta`` (stop reason and the
cumulative ``output_tokens``) -> ``message_stop``, with ``ping`` anywhere and ``error``
(e.g. ``overloaded_error``) possibly mid-stream.
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

RETRYABLE_ERROR_TYPES = frozenset({"overloaded_error", "api_error", "rate_limit_error"})


def split_system(messages: list[ChatMessage]) -> tuple[str, list[dict[str, str]]]:
    """Anthropic takes the system prompt apart and wants user/assistant turns alternating,
    starting with the user: merge neighbours of the same role."""
    system = "\n\n".join(m.content for m in messages if m.role == "system")
    turns: list[dict[str, str]] = []
    for message in messages:
        if message.role == "system":
            continue
        if turns and turns[-1]["role"] == message.role:
            turns[-1]["content"] += "\n\n" + message.content
        else:
            turns.append({"role": message.role, "content": message.content})
    if turns and turns[0]["role"] != "user":
        turns.insert(0, {"role": "user", "content": "(conversation continues)"})
    return system, turns


class AnthropicProvider(HttpProvider):
    name = "anthropic"

    def __init__(self, config: AIConfig) -> None:
        super().__init__(config)
        self.model = config.model or config.anthropic_model
        self.url = config.anthropic_base_url.rstrip("/") + "/v1/messages"

    async def _attempt(
        self, messages: list[ChatMessage], max_tokens: int
    ) -> AsyncIterator[ProviderEvent]:
        system, turns = split_system(messages)
        headers = {
            "content-type": "application/json",
            "x-api-key": self.config.anthropic_api_key or "",
            "anthropic-version": self.config.anthropic_version,
        }
        body: dict[str, Any] = {
            "model": self.model, "max_tokens": max_tokens, "messages": turns, "stream": True,
        }
        if system:
            body["system"] = system
        input_tokens: int | None = None
        output_tokens: int | None = None
        stop_reason: str | None = None
        model = self.model
        text_parts: list[str] = []
        stopped = False
        events = self.client.sse(self.url, headers, body)
        async with contextlib.aclosing(events):  # type: ignore[type-var]
            async for event in events:
                try:
                    data = json.loads(event.data)
                except ValueError as exc:
                    raise ProviderError(
                        "provider_protocol", "AI provider sent invalid JSON"
                    ) from exc
                kind = data.get("type") if isinstance(data, dict) else None
                kind = kind or event.event
                if kind == "content_block_delta":
                    delta = data.get("delta") or {}
                    if delta.get("type") == "text_delta" and delta.get("text"):
                        text_parts.append(delta["text"])
                        yield TextDelta(delta["text"])
                elif kind == "message_start":
                    message = data.get("message") or {}
                    model = str(message.get("model") or model)
                    usage = message.get("usage") or {}
                    if isinstance(usage.get("input_tokens"), int):
                        input_tokens = usage["input_tokens"]
                    if isinstance(usage.get("output_tokens"), int):
                        output_tokens = usage["output_tokens"]
                elif kind == "message_delta":
                    delta = data.get("delta") or {}
                    stop_reason = delta.get("stop_reason") or stop_reason
                    usage = data.get("usage") or {}
                    if isinstance(usage.get("output_tokens"), int):
                        output_tokens = usage["output_tokens"]  # cumulative, not a delta
                    if isinstance(usage.get("input_tokens"), int):
                        input_tokens = usage["input_tokens"]
                elif kind == "message_stop":
                    stopped = True
                    break
                elif kind == "error":
                    err = data.get("error") or {}
                    err_type = str(err.get("type") or "")
                    raise ProviderError(
                        "spend_limit" if err_type == "billing_error" else "provider_error",
                        str(err.get("message") or "AI provider error"),
                        retryable=err_type in RETRYABLE_ERROR_TYPES,
                    )
                # ping, content_block_start/stop and unknown events are ignored.
        if not stopped:
            raise ProviderError(
                "stream_interrupted", "AI provider stream ended early", retryable=True
            )
        text = "".join(text_parts)
        estimated = input_tokens is None or output_tokens is None
        yield Usage(
            input_tokens if input_tokens is not None
            else estimate_messages(m.content for m in messages),
            output_tokens if output_tokens is not None else estimate_tokens(text),
            estimated=estimated,
            finish_reason=stop_reason,
            model=model,
        )
