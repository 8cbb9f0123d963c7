"""Anthropic Messages API, streaming.

``POST {base}/v1/messages`` with ``x-api-key`` and ``anthropic-version``; the stream is
``message_start`` (input tokens) -> ``content_block_start`` -> ``content_block_delta``
(``text_delta``)... -> ``content_block_stop`` -> ``message_delta`` (stop reason and the
cumulative ``output_tokens``) -> ``message_stop``, with ``ping`` anywhere and ``error``
(e.g. ``overloaded_error``) possibly mid-stream.

Tools: the request's ``tools`` (``{name, description, input_schema}``); a call streams as a
``content_block_start`` of type ``tool_use`` (``id``, ``name``), ``input_json_delta``
pieces (``partial_json``) and its ``content_block_stop``, where it is yielded whole as a
``ToolCall``; the message stops with ``stop_reason: "tool_use"``. Turns sent back: the
assistant's content blocks (``text``, ``tool_use``) and a user turn of ``tool_result``
blocks.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

from ai.config import AIConfig
from ai.providers.base import (
    ChatMessage,
    ProviderError,
    ProviderEvent,
    TextDelta,
    ToolCall,
    ToolSpec,
    Usage,
    parse_arguments,
)
from ai.providers.http import HttpProvider
from ai.tokens import estimate_messages, estimate_tokens

RETRYABLE_ERROR_TYPES = frozenset({"overloaded_error", "api_error", "rate_limit_error"})


def _blocks(message: ChatMessage) -> list[dict[str, Any]]:
    if message.role == "tool":
        return [{"type": "tool_result", "tool_use_id": message.tool_call_id,
                 "content": message.content}]
    blocks: list[dict[str, Any]] = []
    if message.content:
        blocks.append({"type": "text", "text": message.content})
    for call in message.tool_calls:
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name,
                       "input": call.arguments})
    return blocks


def split_system(messages: list[ChatMessage]) -> tuple[str, list[dict[str, Any]]]:
    """Anthropic takes the system prompt apart and wants user/assistant turns alternating,
    starting with the user: merge neighbours of the same role (tool results are user
    turns). Plain text turns stay strings; turns with tool blocks become block lists."""
    system = "\n\n".join(m.content for m in messages if m.role == "system")
    turns: list[dict[str, Any]] = []
    for message in messages:
        if message.role == "system":
            continue
        role = "user" if message.role == "tool" else message.role
        structured = message.role == "tool" or bool(message.tool_calls)
        content: Any = _blocks(message) if structured else message.content
        if turns and turns[-1]["role"] == role:
            previous = turns[-1]["content"]
            if isinstance(previous, str) and isinstance(content, str):
                turns[-1]["content"] = previous + "\n\n" + content
            else:
                as_blocks = ([{"type": "text", "text": previous}] if isinstance(previous, str)
                             else previous)
                turns[-1]["content"] = as_blocks + (
                    [{"type": "text", "text": content}] if isinstance(content, str) else content
                )
        else:
            turns.append({"role": role, "content": content})
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
        self, messages: list[ChatMessage], max_tokens: int, tools: Sequence[ToolSpec]
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
        if tools:
            body["tools"] = [{"name": t.name, "description": t.description,
                              "input_schema": t.parameters} for t in tools]
        # The tool_use block being streamed, by block index: id, name, JSON pieces.
        open_calls: dict[int, tuple[str, str, list[str]]] = {}
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
                    elif delta.get("type") == "input_json_delta":
                        call = open_calls.get(int(data.get("index") or 0))
                        if call is not None:
                            call[2].append(str(delta.get("partial_json") or ""))
                elif kind == "content_block_start":
                    block = data.get("content_block") or {}
                    if block.get("type") == "tool_use":
                        open_calls[int(data.get("index") or 0)] = (
                            str(block.get("id") or ""), str(block.get("name") or ""), [])
                elif kind == "content_block_stop":
                    finished = open_calls.pop(int(data.get("index") or 0), None)
                    if finished is not None:
                        call_id, name, pieces = finished
                        arguments, malformed = parse_arguments("".join(pieces))
                        yield ToolCall(call_id, name, arguments, malformed)
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
                # ping and unknown events are ignored.
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
