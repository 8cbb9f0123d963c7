"""A small aiohttp server speaking Judge0 CE's documented API, with its failure modes.

It does not run code: the source decides the outcome, so tests can ask for each status.
- ``COMPILE_ERROR`` in the source: status 6 with base64 compile output.
- ``LOOP``: status 5. ``BOXERROR``: status 13 (isolate failing on cgroup v2 hosts).
- ``MEMORYHOG``: what isolate's cgroup memory limit does: status 11 "Exited with error
  status 137", the peak memory at the limit. ``MEMORYERROR``: status 11, a Python
  ``MemoryError`` traceback on stderr, a low peak (the allocation was refused).
- otherwise: status 3, stdout = the stdin echoed, reversed line order, plus a long line
  so the base64 has line breaks inside (Judge0 wraps base64 at 60 columns).
Submissions go In Queue -> Processing -> final over successive polls. ``queue_full``
makes POST answer ``503 {"error": "queue is full"}``.
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.support.net import free_port

LANGUAGES = [
    {"id": 45, "name": "Assembly (NASM 2.14.02)"},
    {"id": 46, "name": "Bash (5.0.0)"},
    {"id": 48, "name": "C (GCC 7.4.0)"},
    {"id": 50, "name": "C (GCC 9.2.0)"},
    {"id": 54, "name": "C++ (GCC 9.2.0)"},
    {"id": 62, "name": "Java (OpenJDK 13.0.1)"},
    {"id": 63, "name": "JavaScript (Node.js 12.14.0)"},
    {"id": 70, "name": "Python (2.7.17)"},
    {"id": 71, "name": "Python (3.8.1)"},
]
STATUS = {
    1: "In Queue", 2: "Processing", 3: "Accepted", 5: "Time Limit Exceeded",
    6: "Compilation Error", 11: "Runtime Error (NZEC)", 13: "Internal Error",
}


def encode64(text: str) -> str:
    """Like Ruby's Base64.encode64 that Judge0 uses: a newline every 60 characters."""
    raw = base64.b64encode(text.encode()).decode()
    return "".join(raw[i : i + 60] + "\n" for i in range(0, len(raw), 60))


@dataclass
class Submission:
    token: str
    source: str
    stdin: str
    language_id: int
    memory_limit: int = 128000
    polls: int = 0


@dataclass
class FakeJudge0:
    auth_header: str = "X-Auth-Token"
    auth_token: str | None = None
    queue_full: bool = False
    polls_until_done: int = 2
    submissions: dict[str, Submission] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    runner: web.AppRunner | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/languages", self.languages)
        app.router.add_post("/submissions", self.submit)
        app.router.add_get("/submissions/batch", self.batch)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        self.port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def _authorized(self, request: web.Request) -> bool:
        self.requests.append((request.method, request.path, dict(request.query)))
        return self.auth_token is None or request.headers.get(self.auth_header) == self.auth_token

    async def languages(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response({"error": "Authentication failed."}, status=401)
        return web.json_response(LANGUAGES)

    async def submit(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response({"error": "Authentication failed."}, status=401)
        if self.queue_full:
            return web.json_response({"error": "queue is full"}, status=503)
        body = await request.json()
        encoded = request.query.get("base64_encoded") == "true"
        source = body.get("source_code", "")
        stdin = body.get("stdin") or ""
        if encoded:
            source = base64.b64decode(source).decode()
            stdin = base64.b64decode(stdin).decode()
        token = str(uuid.uuid4())
        self.submissions[token] = Submission(
            token, source, stdin, int(body["language_id"]), int(body.get("memory_limit", 128000))
        )
        return web.json_response({"token": token}, status=201)

    def _result(self, sub: Submission) -> dict[str, Any]:
        sub.polls += 1
        if sub.polls <= self.polls_until_done:
            status_id = 1 if sub.polls == 1 else 2
            state = {"id": status_id, "description": STATUS[status_id]}
            return {"token": sub.token, "status": state,
                    "stdout": None, "stderr": None, "compile_output": None, "message": None,
                    "time": None, "memory": None, "exit_code": None}
        result: dict[str, Any] = {
            "token": sub.token, "stdout": None, "stderr": None, "compile_output": None,
            "message": None, "time": "0.012", "memory": 3456, "exit_code": 0,
        }
        if "COMPILE_ERROR" in sub.source:
            status_id = 6
            result["compile_output"] = encode64("main.c:1:1: error: expected ';' before '}'\n")
            result["exit_code"] = None
        elif "LOOP" in sub.source:
            status_id = 5
            result["time"] = "5.001"
            result["exit_code"] = None
        elif "MEMORYHOG" in sub.source:
            status_id = 11
            result["message"] = encode64("Exited with error status 137")
            result["memory"] = sub.memory_limit
            result["exit_code"] = 137
        elif "MEMORYERROR" in sub.source:
            status_id = 11
            result["message"] = encode64("Exited with error status 1")
            result["stderr"] = encode64(
                'Traceback (most recent call last):\n  File "script.py", line 1, in <module>\n'
                "MemoryError\n"
            )
            result["exit_code"] = 1
        elif "BOXERROR" in sub.source:
            status_id = 13
            result["message"] = encode64("No such file or directory @ rb_sysopen - /box/script.py")
            result["time"] = None
            result["exit_code"] = None
        else:
            status_id = 3
            lines = sub.stdin.splitlines()[::-1]
            result["stdout"] = encode64("\n".join(lines) + "\n" + "x" * 100 + "\n")
        result["status"] = {"id": status_id, "description": STATUS[status_id]}
        return result

    async def batch(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return web.json_response({"error": "Authentication failed."}, status=401)
        tokens = [t for t in request.query.get("tokens", "").split(",") if t]
        found = [self._result(self.submissions[t]) if t in self.submissions else None
                 for t in tokens]
        return web.json_response({"submissions": found})
