"""What a chat reply is given besides the conversation: the editor's file or selection, a
web page, the project's file tree and last run, and the tools it may call.

The client asks for context with ``{"file_id", "selection": {"from", "to"}}``,
``{"open_file": file_id}`` or ``{"url": "https://..."}`` (``parse_context``); a file's text is
the live CRDT text when its room is loaded (``DocumentText``).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from ai import project_context
from ai.config import AIConfig
from ai.firecrawl import FirecrawlError, check_url
from ai.project_tools import CodeRunner, DocumentText, ProjectToolbox
from ai.prompt import EditorContext, excerpt, web_page_context
from ai.providers.base import Provider
from ai.workspace_keys import WorkspaceAI
from persistence import ai as store
from persistence.db import Database


class ChatError(Exception):
    """A refused request, answered to the sender only: ``{"type":"error", code, message}``."""

    def __init__(self, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        # Beside code and message (quota_exceeded: resource, limit, used, plan of the payer).
        self.extra = extra


@dataclass(frozen=True)
class ContextRequest:
    file_id: uuid.UUID | None
    selection: tuple[int, int] | None
    # A web page, fetched as markdown through the workspace's Firecrawl key.
    url: str | None = None


def parse_context(raw: Any) -> ContextRequest | None:
    """``{"file_id", "selection": {"from", "to"}}``, ``{"open_file": file_id}`` or
    ``{"url": "https://..."}``."""
    if raw is None or raw == {}:
        return None
    if not isinstance(raw, dict):
        raise ChatError("bad_request", "context must be an object")
    file_value = raw.get("file_id") or raw.get("open_file")
    if raw.get("url") is not None:
        if file_value is not None or not isinstance(raw["url"], str):
            raise ChatError("bad_request", "context is a file or a url, not both")
        try:
            return ContextRequest(None, None, check_url(raw["url"]))
        except FirecrawlError as exc:
            raise ChatError("bad_request", exc.message) from None
    if file_value is None:
        return None
    try:
        file_id = uuid.UUID(str(file_value))
    except ValueError:
        raise ChatError("bad_request", "context file id is not a UUID") from None
    selection = raw.get("selection") if "file_id" in raw else None
    if selection is None:
        return ContextRequest(file_id, None)
    if not isinstance(selection, dict):
        raise ChatError("bad_request", "selection must be {from, to}")
    start, end = selection.get("from"), selection.get("to")
    if not isinstance(start, int) or not isinstance(end, int):
        raise ChatError("bad_request", "selection must be {from, to} character offsets")
    return ContextRequest(file_id, (start, end))


class ReplyContext:
    def __init__(
        self,
        db: Database,
        config: AIConfig,
        workspace_ai: WorkspaceAI | None,
        documents: DocumentText | None,
        executions: CodeRunner | None,
    ) -> None:
        self.db = db
        self.config = config
        self.workspace_ai = workspace_ai
        self.documents = documents
        self.executions = executions

    async def web_page(
        self, conversation_id: uuid.UUID, request: ContextRequest | None
    ) -> EditorContext | None:
        """A web page asked for as context, fetched before any database connection is held
        (Firecrawl may take seconds)."""
        if request is None or request.url is None:
            return None
        if self.workspace_ai is None:
            raise ChatError("firecrawl_not_configured", "web pages cannot be attached here")
        try:
            page = await self.workspace_ai.web_page(conversation_id, request.url)
        except FirecrawlError as exc:
            raise ChatError(exc.code, exc.message) from None
        return web_page_context(page.url, page.title, page.markdown)

    def toolbox(
        self, provider: Provider, project_id: uuid.UUID, user_id: uuid.UUID
    ) -> ProjectToolbox | None:
        if not provider.supports_tools or self.config.tool_steps <= 0:
            return None
        return ProjectToolbox(self.db, project_id, user_id, self.documents, self.executions)

    async def project_text(
        self, conn: Any, project_id: uuid.UUID, user_id: uuid.UUID,
        toolbox: ProjectToolbox | None,
    ) -> str | None:
        """The file tree and the last run (and the tool budget), as a colleague sees them."""
        if not self.config.project_context:
            return None
        text = project_context.render(await project_context.read(conn, project_id, user_id))
        if toolbox is not None:
            text += "\n\n" + self.config.tool_budget.describe()
        return text

    async def editor_context(
        self, conn: Any, conversation: store.ConversationInfo, request: ContextRequest
    ) -> EditorContext:
        assert request.file_id is not None
        row = await store.file_row(conn, request.file_id)
        if row is None or row["project_id"] != conversation.project_id or row["is_deleted"]:
            raise ChatError("bad_request", "the context file is not in this project")
        if row["type"] != "file":
            raise ChatError("bad_request", "the context must be a file, not a folder")
        text: str | None = None
        documents = self.documents
        if documents is not None:
            text = await documents.read_text(request.file_id)
        if text is None:
            text = row["content"] or ""
        return excerpt(row["path"], row["language"], text, request.selection)
