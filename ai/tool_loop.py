"""The assistant's turn with tools: stream, run the calls it asks for, stream again.

Bounds (``ToolBudget``, stated to the model in the system prompt too):
- at most ``max_steps`` rounds of tool calls, each running at most ``max_calls_per_step``
  calls (extra calls of a round are answered "not run: too many calls at once");
- no tools are offered once the rounds so far used ``max_tokens`` (input + output of every
  provider request of this turn);
- the request after the last allowed round goes out without tools, so the model has to
  answer: a turn makes at most ``max_steps + 1`` provider requests, whatever the model does.

No I/O of its own: the provider streams, the ``Toolbox`` runs the calls, and the caller's
callbacks show text and calls as they happen.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ai.providers.base import ChatMessage, Provider, TextDelta, ToolCall, ToolSpec, Usage


@dataclass(frozen=True)
class ToolBudget:
    max_steps: int = 4
    max_tokens: int = 24_000
    max_calls_per_step: int = 4
    max_result_chars: int = 8_000

    def describe(self) -> str:
        return (
            f"You may call tools in at most {self.max_steps} rounds (at most "
            f"{self.max_calls_per_step} calls a round) and about {self.max_tokens} tokens in "
            "all; then answer from what you have."
        )


@dataclass(frozen=True)
class ToolResult:
    ok: bool
    content: str  # what the model reads
    summary: str  # one line for the people watching the chat


class Toolbox(Protocol):
    def specs(self) -> list[ToolSpec]: ...

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolResult: ...


@dataclass
class ToolRecord:
    """One call as shown in the chat and stored with the message."""

    step: int
    call: ToolCall
    ok: bool = False
    summary: str = ""
    result: str = ""
    duration_ms: int = 0

    def call_json(self) -> dict[str, Any]:
        return {"id": self.call.id, "name": self.call.name, "arguments": self.call.arguments}

    def to_json(self) -> dict[str, Any]:
        return {**self.call_json(), "step": self.step, "ok": self.ok, "summary": self.summary,
                "result": self.result, "duration_ms": self.duration_ms}


@dataclass
class LoopOutcome:
    usage: Usage | None = None
    records: list[ToolRecord] = field(default_factory=list)
    requests: int = 0
    budget_exhausted: bool = False


OnText = Callable[[str], Awaitable[None]]
OnTool = Callable[[ToolRecord], Awaitable[None]]


def add_usage(total: Usage | None, more: Usage) -> Usage:
    if total is None:
        return more
    return Usage(
        total.input_tokens + more.input_tokens, total.output_tokens + more.output_tokens,
        estimated=total.estimated or more.estimated, finish_reason=more.finish_reason,
        model=more.model,
    )


async def _run_call(toolbox: Toolbox, record: ToolRecord, budget: ToolBudget) -> None:
    started = time.monotonic()
    call = record.call
    if call.malformed:
        result = ToolResult(False, "error: the arguments were not a JSON object",
                            "bad arguments")
    elif call.name not in {spec.name for spec in toolbox.specs()}:
        result = ToolResult(False, f"error: no tool named {call.name!r}", "unknown tool")
    else:
        result = await toolbox.call(call.name, call.arguments)
    content = result.content
    if len(content) > budget.max_result_chars:
        content = content[: budget.max_result_chars] + "\n… (truncated)"
    record.ok, record.summary, record.result = result.ok, result.summary, content
    record.duration_ms = int((time.monotonic() - started) * 1000)


async def converse(
    provider: Provider,
    messages: list[ChatMessage],
    *,
    max_tokens: int,
    toolbox: Toolbox | None,
    budget: ToolBudget,
    on_text: OnText,
    on_tool_call: OnTool | None = None,
    on_tool_result: OnTool | None = None,
) -> LoopOutcome:
    """Stream the reply to ``on_text``; run tool calls between requests, within ``budget``."""
    outcome = LoopOutcome()
    turns = list(messages)
    use_tools = toolbox is not None and provider.supports_tools and budget.max_steps > 0
    step = 0
    while True:
        spent = outcome.usage.total if outcome.usage is not None else 0
        offer = use_tools and step < budget.max_steps and spent < budget.max_tokens
        if use_tools and not offer:
            outcome.budget_exhausted = True
        assert toolbox is not None or not offer
        specs = toolbox.specs() if offer and toolbox is not None else None
        calls: list[ToolCall] = []
        text: list[str] = []
        events = provider.stream(turns, max_tokens=max_tokens, tools=specs)
        outcome.requests += 1
        async with contextlib.aclosing(events):  # type: ignore[type-var]
            async for event in events:
                if isinstance(event, TextDelta):
                    text.append(event.text)
                    await on_text(event.text)
                elif isinstance(event, ToolCall):
                    calls.append(event)
                else:
                    outcome.usage = add_usage(outcome.usage, event)
        if not calls or not offer or toolbox is None:
            return outcome
        step += 1
        turns.append(ChatMessage("assistant", "".join(text), tool_calls=tuple(calls)))
        for index, call in enumerate(calls):
            record = ToolRecord(step, call)
            outcome.records.append(record)
            if on_tool_call is not None:
                await on_tool_call(record)
            if index < budget.max_calls_per_step:
                await _run_call(toolbox, record, budget)
            else:
                record.summary = "not run: too many calls at once"
                record.result = "error: " + record.summary
            if on_tool_result is not None:
                await on_tool_result(record)
            turns.append(ChatMessage("tool", record.result, tool_call_id=call.id))
