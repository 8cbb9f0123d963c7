"""What every provider yields and raises, and the retry policy they share."""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Role = Literal["system", "user", "assistant", "tool"]

# HTTP statuses worth another try before the first token (529: Anthropic "overloaded").
RETRYABLE_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})
# Error codes/types that mean "no money left": retrying cannot help.
SPEND_LIMIT_CODES = frozenset(
    {"insufficient_quota", "billing_error", "billing_hard_limit_reached", "spend_limit"}
)


@dataclass(frozen=True)
class ToolSpec:
    """A function the model may call: its name, what it does, its JSON Schema parameters."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class ToolCall:
    """A call the model asked for (complete: emitted once its arguments finished
    streaming). ``arguments`` is the parsed JSON object; ``{}`` with ``malformed`` set when
    the model sent something else."""

    id: str
    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    malformed: bool = False


@dataclass(frozen=True)
class ChatMessage:
    """One turn. An assistant turn may carry ``tool_calls``; a ``tool`` turn is the result
    of the call ``tool_call_id`` (its text in ``content``)."""

    role: Role
    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class Usage:
    input_tokens: int
    output_tokens: int
    estimated: bool
    finish_reason: str | None
    model: str

    @property
    def total(self) -> int:
        return self.input_tokens + self.output_tokens


ProviderEvent = TextDelta | ToolCall | Usage


class ProviderError(Exception):
    """A provider failure with a stable ``code`` for clients.

    ``retryable`` says whether another attempt may succeed (only ever tried before the
    first token); ``retry_after`` is the provider's hint in seconds, if it gave one.
    """

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after


class Provider(Protocol):
    name: str
    model: str
    # Whether ``stream`` accepts ``tools`` (function calling in the provider's wire format).
    supports_tools: bool

    def stream(
        self, messages: list[ChatMessage], *, max_tokens: int,
        tools: Sequence[ToolSpec] | None = None,
    ) -> AsyncIterator[ProviderEvent]: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    def health(self) -> dict[str, Any]: ...


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or HTTP date)."""
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def backoff_delay(attempt: int, retry_after: float | None, base: float, cap: float) -> float:
    """The provider's hint when given, else exponential backoff; never more than ``cap``."""
    if retry_after is not None:
        return min(retry_after, cap)
    return float(min(base * (2**attempt), cap))


def error_from_body(status: int, body: Any, default_message: str) -> ProviderError:
    """A ``ProviderError`` from an HTTP error status and a (JSON) error body."""
    err = body.get("error") if isinstance(body, dict) else None
    if isinstance(err, str):
        err = {"message": err}
    if not isinstance(err, dict):
        err = {}
    kind = str(err.get("code") or err.get("type") or "")
    message = str(err.get("message") or default_message)
    lowered = message.lower()
    spend = (
        status == 402
        or kind in SPEND_LIMIT_CODES
        or str(err.get("type") or "") in SPEND_LIMIT_CODES
        or "credit balance" in lowered
    )
    if spend:
        return ProviderError("spend_limit", message, status=status)
    if status in (401, 403):
        return ProviderError("provider_auth", message, status=status)
    return ProviderError(
        "provider_error", message, status=status, retryable=status in RETRYABLE_STATUSES
    )


def parse_arguments(raw: str) -> tuple[dict[str, Any], bool]:
    """A tool call's streamed JSON arguments -> (object, malformed)."""
    if not raw.strip():
        return {}, False
    try:
        value = json.loads(raw)
    except ValueError:
        return {}, True
    return (value, False) if isinstance(value, dict) else ({}, True)
