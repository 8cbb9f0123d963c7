"""What a colleague sees besides the open file: the project's file tree and the last run.

Rendered as one system message beside the prompt (``render``); each part is capped so the
context stays a small share of the budget. Reading is one connection, two indexed queries.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from persistence import ai_context as store

MAX_TREE_ENTRIES = 300
MAX_TREE_CHARS = 4_000
MAX_RUN_CHARS = 2_000


@dataclass(frozen=True)
class ProjectContext:
    tree: list[tuple[str, str]]  # (path, "file" | "folder")
    last_run: dict[str, Any] | None


async def read(
    conn: asyncpg.Connection, project_id: uuid.UUID, user_id: uuid.UUID
) -> ProjectContext:
    tree = await store.file_tree(conn, project_id, MAX_TREE_ENTRIES + 1)
    return ProjectContext(tree, await store.last_run(conn, project_id, user_id))


def _tail(text: str | None, limit: int) -> str:
    text = (text or "").rstrip()
    return text if len(text) <= limit else "… " + text[-limit:]


def render_tree(tree: list[tuple[str, str]]) -> str:
    lines: list[str] = []
    size = 0
    for path, kind in tree[:MAX_TREE_ENTRIES]:
        line = f"- {path}{'/' if kind == 'folder' else ''}"
        size += len(line) + 1
        if size > MAX_TREE_CHARS:
            break
        lines.append(line)
    more = len(tree) - len(lines)
    if more > 0:
        lines.append(f"- … and {more}{'+' if len(tree) > MAX_TREE_ENTRIES else ''} more")
    return "The project's files:\n" + ("\n".join(lines) if lines else "(none)")


def render_run(run: dict[str, Any]) -> str:
    where = f" of {run['path']}" if run.get("path") else ""
    exit_code = run.get("exit_code")
    head = (f"The user's last run{where} ({run['language']}): status {run['status']}"
            + (f", exit code {exit_code}" if exit_code is not None else ""))
    parts = [head]
    for label, key in (("compile output", "compile_output"), ("stdout", "stdout"),
                       ("stderr", "stderr"), ("message", "message")):
        value = _tail(run.get(key), MAX_RUN_CHARS)
        if value:
            parts.append(f"{label}:\n```\n{value}\n```")
    return "\n".join(parts)


def render(context: ProjectContext) -> str:
    parts = [render_tree(context.tree)]
    if context.last_run is not None:
        parts.append(render_run(context.last_run))
    return "\n\n".join(parts)
