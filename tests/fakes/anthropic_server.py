"""A fake Anthropic ``/v1/messages`` streaming server.

Wire format (Anthropic "Streaming Messages"): ``event: <type>`` + ``data: {json}`` for
``message_start`` (usage.input_tokens), ``content_block_start``, ``ping``,
``content_block_delta`` (``text_delta``), ``content_block_stop``, ``message_delta``
(stop_reason, cumulative usage.output_tokens), ``message_stop``; ``error`` events
(``overloaded_error``) mid-stream; HTTP 529 overloaded and 429 with ``retry-after``.
Requests need ``x-api-key`` and ``anthropic-version`` headers.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from tests.fakes.sse_server import FakeSSEServer, Script

MODEL = "claude-fake-1"


def event(kind: str, data: dict[str, Any]) -> bytes:
    payload = {"type": kind, **data}
    return f"event: {kind}\ndata: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()


def stream(pieces: list[str], input_tokens: int = 25, with_usage: bool = True) -> list[bytes]:
    out = [
        event("message_start", {"message": {
            "id": "msg_fake", "type": "message", "role": "assistant", "content": [],
            "model": MODEL, "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": 1}
            if with_usage else {}}}),
        event("content_block_start", {"index": 0,
                                      "content_block": {"type": "text", "text": ""}}),
        event("ping", {}),
    ]
    for index, piece in enumerate(pieces):
        out.append(event("content_block_delta", {
            "index": 0, "delta": {"type": "text_delta", "text": piece}}))
        if with_usage and index == len(pieces) // 2:
            # Cumulative counts: a later message_delta supersedes this one.
            out.append(event("message_delta", {"delta": {}, "usage": {"output_tokens": 2}}))
    out.append(event("content_block_stop", {"index": 0}))
    out.append(event("message_delta", {
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": len(pieces) + 3} if with_usage else {}}))
    out.append(event("message_stop", {}))
    return out


def tool_use_stream(
    calls: list[tuple[str, str, str]], *, text: str | None = None, input_tokens: int = 40,
    piece: int = 6,
) -> list[bytes]:
    """A reply that calls tools, as Anthropic streams it: an optional text block, then per
    call a ``tool_use`` block (``content_block_start`` with id and name and ``input: {}``,
    ``input_json_delta`` pieces, ``content_block_stop``), ``stop_reason: "tool_use"``.
    ``calls``: (id, name, input JSON)."""
    out = [event("message_start", {"message": {
        "id": "msg_fake", "type": "message", "role": "assistant", "content": [],
        "model": MODEL, "stop_reason": None, "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": 1}}})]
    index = 0
    if text:
        out += [event("content_block_start", {"index": 0,
                                              "content_block": {"type": "text", "text": ""}}),
                event("content_block_delta", {"index": 0,
                                              "delta": {"type": "text_delta", "text": text}}),
                event("content_block_stop", {"index": 0})]
        index = 1
    for call_id, name, arguments in calls:
        out.append(event("content_block_start", {"index": index, "content_block": {
            "type": "tool_use", "id": call_id, "name": name, "input": {}}}))
        for start in range(0, len(arguments), piece):
            out.append(event("content_block_delta", {"index": index, "delta": {
                "type": "input_json_delta", "partial_json": arguments[start:start + piece]}}))
        out.append(event("content_block_stop", {"index": index}))
        index += 1
    out.append(event("message_delta", {
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": {"output_tokens": 20}}))
    out.append(event("message_stop", {}))
    return out


def error_event(kind: str = "overloaded_error", message: str = "Overloaded") -> bytes:
    return event("error", {"error": {"type": kind, "message": message}})


def error_body(kind: str, message: str) -> bytes:
    return json.dumps({"type": "error", "error": {"type": kind, "message": message}}).encode()


def overloaded(retry_after: str | None = None) -> Script:
    headers = {"retry-after": retry_after} if retry_after else {}
    return Script(status=529, headers=headers, body=error_body("overloaded_error", "Overloaded"))


class FakeAnthropic(FakeSSEServer):
    path = "/v1/messages"

    def __init__(self, api_key: str = "sk-ant-fake") -> None:
        super().__init__()
        self.api_key = api_key

    def check(self, request: web.Request) -> web.Response | None:
        if request.headers.get("x-api-key") != self.api_key:
            return web.Response(status=401, content_type="application/json", body=error_body(
                "authentication_error", "invalid x-api-key"))
        if not request.headers.get("anthropic-version"):
            return web.Response(status=400, content_type="application/json", body=error_body(
                "invalid_request_error", "anthropic-version header is required"))
        return None
