"""OpenAI-compatible chat completions (OpenAI, Ollama, vLLM, llama.cpp servers).

``POST {base}/v1/chat/completions`` with ``stream: true`` and
``stream_options.include_usage``; chunks carry ``choices[0].delta.content`` and the last
one (empty ``choices``) carries ``usage``. The stream ends with ``data: [DONE]``.

Tools: the request's ``tools`` (``{"type": "function", "function": {name, description,
parameters}}``); the reply streams ``delta.tool_calls`` fragments (``index``, then ``id`` and
``function.name`` once, ``function.arguments`` in pieces) and ends with
``finish_reason: "tool_calls"``. Each call is yielded whole as a ``ToolCall`` when the
stream ends. Turns sent back: the assistant's ``tool_calls`` and one ``role: "tool"``
message per result (``tool_call_id``).
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

RETRYABLE_STREAM_ERRORS = frozenset(
    {"server_error", "overloaded", "overloaded_error", "rate_limit_exceeded", "api_error"}
)


def chat_completions_url(base_url: str) -> str:
    base = base_url.rstrip("/")
    if base.endswith("/v1"):
        return base + "/chat/completions"
    return base + "/v1/chat/completions"


def wire_message(message: ChatMessage) -> dict[str, Any]:
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id,
                "content": message.content}
    if message.tool_calls:
        return {"role": "assistant", "content": message.content or None, "tool_calls": [
            {"id": call.id, "type": "function",
             "function": {"name": call.name,
                          "arguments": json.dumps(call.arguments, ensure_ascii=False)}}
            for call in message.tool_calls
        ]}
    return {"role": message.role, "content": message.content}


def wire_tools(tools: Sequence[ToolSpec]) -> list[dict[str, Any]]:
    return [{"type": "function", "function": {
        "name": tool.name, "description": tool.description, "parameters": tool.parameters,
    }} for tool in tools]


class PendingCalls:
    """Tool-call fragments of one stream, by ``index``, assembled into ``ToolCall``s."""

    def __init__(self) -> None:
        self.parts: dict[int, dict[str, Any]] = {}

    def add(self, fragments: Any) -> None:
        for fragment in fragments if isinstance(fragments, list) else ():
            if not isinstance(fragment, dict):
                continue
            index = int(fragment.get("index") or 0)
            part = self.parts.setdefault(index, {"id": "", "name": "", "arguments": []})
            if fragment.get("id"):
                part["id"] = str(fragment["id"])
            function = fragment.get("function") or {}
            if function.get("name"):
                part["name"] += str(function["name"])
            if function.get("arguments"):
                part["arguments"].append(str(function["arguments"]))

    def calls(self) -> list[ToolCall]:
        out = []
        for index in sorted(self.parts):
            part = self.parts[index]
            arguments, malformed = parse_arguments("".join(part["arguments"]))
            out.append(ToolCall(part["id"] or f"call_{index}", part["name"], arguments,
                                malformed))
        return out


class OpenAICompatProvider(HttpProvider):
    def __init__(
        self, config: AIConfig, base_url: str, api_key: str | None, model: str,
        name: str = "openai", supports_tools: bool = True,
    ) -> None:
        super().__init__(config)
        self.name = name
        self.model = model
        self.url = chat_completions_url(base_url)
        self.api_key = api_key
        self.supports_tools = supports_tools

    async def _attempt(
        self, messages: list[ChatMessage], max_tokens: int, tools: Sequence[ToolSpec]
    ) -> AsyncIterator[ProviderEvent]:
        headers = {"content-type": "application/json"}
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [wire_message(m) for m in messages],
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": max_tokens,
        }
        if tools and self.supports_tools:
            body["tools"] = wire_tools(tools)
        pending = PendingCalls()
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
                    if delta.get("tool_calls"):
                        pending.add(delta["tool_calls"])
                    if choice.get("finish_reason"):
                        finish_reason = str(choice["finish_reason"])
        if not done and finish_reason is None:
            raise ProviderError(
                "stream_interrupted", "AI provider stream ended early", retryable=True
            )
        for call in pending.calls():
            yield call
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
