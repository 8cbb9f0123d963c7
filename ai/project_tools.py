"""The assistant's tools on one project: read a file, search the project, run code.

Each call runs with the rights of the person who asked (a member of the project: viewers
cannot start replies) and reads what they could read: live text from the document hub
when a file is open somewhere, the stored text otherwise. ``run_code`` goes through the
execution hub like the Run button (sandbox, limits, usage row, events on the project
channel), and waits at most ``RUN_TIMEOUT_S`` for the result.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from ai.providers.base import ToolSpec
from ai.tool_loop import ToolResult
from persistence import ai_context as store
from persistence.db import Database

RUN_TIMEOUT_S = 30.0
MAX_SEARCH_FILES = 20
MAX_SEARCH_LINES = 60
MAX_QUERY = 200


class DocumentText(Protocol):
    async def read_text(self, file_id: uuid.UUID) -> str | None: ...


class CodeRunner(Protocol):
    async def run_to_end(
        self, *, user_id: uuid.UUID, project_id: uuid.UUID, file_id: uuid.UUID | None,
        language: str | None, source: str | None, timeout_s: float,
    ) -> dict[str, Any]: ...


SPECS = {
    "read_file": ToolSpec(
        "read_file", "Read a file of the project by its path (as listed in the file tree).",
        {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
    ),
    "search_project": ToolSpec(
        "search_project",
        "Find lines containing a text (case-insensitive) in the project's files.",
        {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]},
    ),
    "run_code": ToolSpec(
        "run_code",
        "Run a file of the project (path) or a snippet (code and language) in the sandbox; "
        "returns the exit code, stdout and stderr.",
        {"type": "object", "properties": {
            "path": {"type": "string"}, "code": {"type": "string"},
            "language": {"type": "string"}}},
    ),
}


class ProjectToolbox:
    def __init__(
        self, db: Database, project_id: uuid.UUID, user_id: uuid.UUID,
        documents: DocumentText | None, runner: CodeRunner | None,
    ) -> None:
        self.db = db
        self.project_id = project_id
        self.user_id = user_id
        self.documents = documents
        self.runner = runner
        self._handlers: dict[str, Callable[[dict[str, Any]], Awaitable[ToolResult]]] = {
            "read_file": self._read_file, "search_project": self._search,
        }
        if runner is not None:
            self._handlers["run_code"] = self._run_code

    def specs(self) -> list[ToolSpec]:
        return [SPECS[name] for name in self._handlers]

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolResult:
        return await self._handlers[name](arguments)

    async def _text(self, file_id: uuid.UUID, stored: str | None) -> str:
        live = await self.documents.read_text(file_id) if self.documents is not None else None
        return live if live is not None else (stored or "")

    async def _file(self, path: Any) -> tuple[Any, str] | ToolResult:
        if not isinstance(path, str) or not path:
            return ToolResult(False, "error: give a path", "no path")
        path = path.replace("\\", "/").strip("/")  # stored paths have no leading slash
        async with self.db.service() as conn:
            row = await store.file_by_path(conn, self.project_id, path)
        if row is None:
            return ToolResult(False, f"error: no file {path}", f"{path}: not found")
        if row["type"] != "file":
            return ToolResult(False, f"error: {path} is a folder", f"{path}: a folder")
        return row, path

    async def _read_file(self, arguments: dict[str, Any]) -> ToolResult:
        found = await self._file(arguments.get("path"))
        if isinstance(found, ToolResult):
            return found
        row, path = found
        text = await self._text(row["id"], row["content"])
        lines = text.count("\n") + (1 if text and not text.endswith("\n") else 0)
        return ToolResult(True, f"{path} ({lines} lines):\n{text}", f"read {path} ({lines} lines)")

    async def _search(self, arguments: dict[str, Any]) -> ToolResult:
        query = arguments.get("query")
        if not isinstance(query, str) or not query.strip() or len(query) > MAX_QUERY:
            return ToolResult(False, "error: give a query (200 characters at most)", "no query")
        async with self.db.service() as conn:
            found = await store.search_files(conn, self.project_id, query, MAX_SEARCH_FILES)
        needle = query.lower()
        hits: list[str] = []
        for file_id, path in found:
            text = await self._text(file_id, None)
            for number, line in enumerate(text.splitlines(), 1):
                if needle in line.lower():
                    hits.append(f"{path}:{number}: {line.strip()[:200]}")
            if len(hits) >= MAX_SEARCH_LINES:
                break
        hits = hits[:MAX_SEARCH_LINES]
        summary = f"searched {query!r}: {len(hits)} line(s) in {len(found)} file(s)"
        return ToolResult(True, "\n".join(hits) or "no matches", summary)

    async def _run_code(self, arguments: dict[str, Any]) -> ToolResult:
        assert self.runner is not None
        file_id: uuid.UUID | None = None
        source = arguments.get("code")
        language = arguments.get("language")
        label = "snippet"
        if arguments.get("path"):
            found = await self._file(arguments["path"])
            if isinstance(found, ToolResult):
                return found
            file_id, label = found[0]["id"], found[1]
            source = None
        elif not isinstance(source, str) or not isinstance(language, str):
            return ToolResult(False, "error: give a path, or code and language", "nothing to run")
        try:
            run = await self.runner.run_to_end(
                user_id=self.user_id, project_id=self.project_id, file_id=file_id,
                language=language if isinstance(language, str) else None, source=source,
                timeout_s=RUN_TIMEOUT_S,
            )
        except Exception as exc:  # ExecutionError (refused) and its kin: told to the model
            message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            return ToolResult(False, f"error: {message}", f"run of {label} refused")
        if not run.get("finished"):
            return ToolResult(False, "the run did not finish in time",
                              f"ran {label}: still running")
        body = [f"status: {run['status_description']}, exit code {run.get('exit_code')}"]
        for key in ("compile_output", "stdout", "stderr"):
            if run.get(key):
                body.append(f"{key}:\n{run[key]}")
        return ToolResult(True, "\n".join(body),
                          f"ran {label}: {run['status_description']}, exit {run.get('exit_code')}")
