"""A fake OpenAI-compatible ``/v1/chat/completions`` streaming server.

Wire format (OpenAI API reference, "chat completion chunk"): ``data: {chunk}`` events,
``choices[0].delta.content`` text, a ``finish_reason`` chunk, with
``stream_options.include_usage`` one more chunk with empty ``choices`` and ``usage``, then
``data: [DONE]``. Errors: HTTP status with ``{"error": {message, type, code}}``
(429 ``rate_limit_exceeded`` with ``retry-after``, 429 ``insufficient_quota``), or an
``{"error": ...}`` chunk mid-stream.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from tests.fakes.sse_server import FakeSSEServer, Script

MODEL = "gpt-fake-1"


def chunk(content: str | None = None, finish: str | None = None, model: str = MODEL) -> bytes:
    delta: dict[str, Any] = {} if content is None else {"content": content}
    payload = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()


def usage_chunk(prompt: int, completion: int, model: str = MODEL) -> bytes:
    payload = {
        "id": "chatcmpl-fake",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": model,
        "choices": [],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                  "total_tokens": prompt + completion},
    }
    return f"data: {json.dumps(payload)}\n\n".encode()


def stream(
    pieces: list[str],
    *,
    usage: tuple[int, int] | None = (11, 7),
    done: bytes = b"data: [DONE]\n\n",
    finish: str = "stop",
) -> list[bytes]:
    """One event per piece, the finish chunk, the usage chunk (unless None), [DONE]."""
    out = [b'data: {"id":"chatcmpl-fake","object":"chat.completion.chunk","created":1,'
           b'"model":"' + MODEL.encode() + b'","choices":[{"index":0,"delta":'
           b'{"role":"assistant","content":""},"finish_reason":null}]}\n\n']
    out += [chunk(piece) for piece in pieces]
    out.append(chunk(None, finish))
    if usage is not None:
        out.append(usage_chunk(*usage))
    out.append(done)
    return out


def tool_calls_stream(
    calls: list[tuple[str, str, str]],
    *,
    text: str | None = None,
    usage: tuple[int, int] | None = (30, 12),
    piece: int = 7,
) -> list[bytes]:
    """A reply that calls tools, as OpenAI streams it: optional text, then per call a delta
    with ``index``, ``id``, ``type`` and ``function.name`` (arguments ""), then the
    arguments JSON in ``piece``-character fragments carrying only ``index``; a
    ``finish_reason: "tool_calls"`` chunk, usage, [DONE]. ``calls``: (id, name, arguments)."""
    out = [chunk(text)] if text else []
    for index, (call_id, name, arguments) in enumerate(calls):
        out.append(_delta_chunk({"tool_calls": [{
            "index": index, "id": call_id, "type": "function",
            "function": {"name": name, "arguments": ""}}]}))
        for start in range(0, len(arguments), piece):
            out.append(_delta_chunk({"tool_calls": [{
                "index": index, "function": {"arguments": arguments[start:start + piece]}}]}))
    out.append(chunk(None, "tool_calls"))
    if usage is not None:
        out.append(usage_chunk(*usage))
    out.append(b"data: [DONE]\n\n")
    return out


def _delta_chunk(delta: dict[str, Any]) -> bytes:
    payload = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1700000000,
               "model": MODEL, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()


def error_body(message: str, type_: str, code: str | None = None) -> bytes:
    return json.dumps({"error": {"message": message, "type": type_, "param": None,
                                 "code": code}}).encode()


def rate_limited(retry_after: str = "0.2") -> Script:
    return Script(status=429, headers={"retry-after": retry_after},
                  body=error_body("Rate limit reached", "requests", "rate_limit_exceeded"))


def insufficient_quota() -> Script:
    return Script(status=429, body=error_body(
        "You exceeded your current quota", "insufficient_quota", "insufficient_quota"))


def mid_stream_error(before: list[str]) -> list[bytes]:
    err = {"error": {"message": "The server had an error while processing your request.",
                     "type": "server_error", "code": None}}
    return [chunk(p) for p in before] + [f"data: {json.dumps(err)}\n\n".encode()]


class FakeOpenAI(FakeSSEServer):
    path = "/v1/chat/completions"

    def __init__(self, api_key: str | None = "sk-fake") -> None:
        super().__init__()
        self.api_key = api_key

    def check(self, request: web.Request) -> web.Response | None:
        if self.api_key and request.headers.get("authorization") != f"Bearer {self.api_key}":
            return web.Response(status=401, content_type="application/json", body=error_body(
                "Incorrect API key provided", "invalid_request_error", "invalid_api_key"))
        return None
