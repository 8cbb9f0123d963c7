"""AI edits: the model's new text for a range, streamed into the shared document.

``start`` (the API, after checking the caller may write the file): the model and the
allowance (as for chat: the ai_jobs row holds the reservation, at most one running edit
per file), then the edit joins the file's room as a peer of its own
(``collab.assistant_peer``), deletes the range in one update, shows its awareness entry
("Assistant", its colour, a cursor that moves as it writes) and announces
``ai_edit.started`` on the project channel. A task owned by this service streams the
provider's text (or a chat message's code block: "apply to file") into the document, one
small update per piece, ``ai_edit.progress`` on the project channel every
``PROGRESS_S``, and ends with ``ai_edit.finished`` (outcome ``completed``, ``kept``,
``rolled_back`` or ``failed``); the job and the tokens are settled in one transaction.

Cancel (``cancel``, from any node: the node holding the edit gets it over the broker)
keeps what was written or rolls it back, as the caller chooses; a provider failure rolls
back. The edit is made on the node that took the request; its updates fan out to other
nodes and into the update log like any client's. ``close`` (shutdown) keeps what was
written.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ai import edit_prompt, metering, project_context
from ai.config import AIConfig
from ai.edit_pieces import PieceBatch, replay_text
from ai.providers.base import ProviderError, ProviderEvent, TextDelta, Usage
from ai.registry import ProviderSlot
from ai.tokens import estimate_messages, estimate_tokens
from ai.workspace_keys import WorkspaceAI
from broker.interface import Broker
from collab.assistant_peer import AssistantPeer
from persistence import ai_jobs as jobs_store
from persistence.db import Database

log = logging.getLogger(__name__)

CHANNEL = "ai-edits"
PROGRESS_S = 0.25
AWARENESS_S = 0.05
CLOSE_TIMEOUT_S = 10.0
WRITE_ROLES = frozenset({"owner", "admin", "member"})

Publish = Callable[[uuid.UUID, dict[str, Any]], Awaitable[None]]


class EditError(Exception):
    def __init__(self, code: str, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        # Beside code and message (quota_exceeded: resource, limit, used, plan).
        self.extra = extra


class DocumentPeers(Protocol):
    """What an edit needs of the document hub: to be one of a room's peers."""

    async def join(self, file_id: uuid.UUID, peer: Any) -> Any: ...

    def receive(self, room: Any, peer: Any, raw: bytes) -> None: ...

    def leave(self, room: Any, peer: Any) -> None: ...


@dataclass
class Edit:
    id: uuid.UUID
    file_id: uuid.UUID
    project_id: uuid.UUID
    workspace_id: uuid.UUID
    user_id: uuid.UUID
    user_name: str | None
    peer: AssistantPeer
    room: Any
    selection: tuple[int, int]
    instruction: str | None
    source: str  # "model" or "message"
    model: str | None
    prompt_tokens: int = 0
    started: float = field(default_factory=time.monotonic)
    first_char_at: float | None = None
    chars: int = 0
    cancel_mode: str | None = None  # "keep" or "rollback"
    task: asyncio.Task[None] | None = None
    stream_task: asyncio.Task[Usage | None] | None = None

    def public(self, **extra: Any) -> dict[str, Any]:
        return {
            "id": str(self.id), "file_id": str(self.file_id), "project_id": str(self.project_id),
            "user_id": str(self.user_id), "client_id": self.peer.client_id,
            "selection": {"from": self.selection[0], "to": self.selection[1]},
            "instruction": self.instruction, "source": self.source, "model": self.model,
            "chars": self.chars, **extra,
        }


class AIEdits:
    def __init__(
        self, db: Database, slot: ProviderSlot, config: AIConfig, documents: DocumentPeers,
        broker: Broker, publish: Publish, workspace_ai: WorkspaceAI | None = None,
    ) -> None:
        self.db = db
        self.slot = slot
        # A workspace's own provider key, when it has one, as for its chat.
        self.workspace_ai = workspace_ai
        self.config = config
        self.documents = documents
        self.broker = broker
        self.publish = publish
        self.edits: dict[uuid.UUID, Edit] = {}
        self.finished = 0

    async def start(self) -> None:
        await self.broker.subscribe(CHANNEL, self._on_broker)

    async def close(self) -> None:
        """Stop every edit here, keeping what was written; wait for them to settle."""
        tasks = []
        for edit in list(self.edits.values()):
            self._cancel(edit, "keep")
            if edit.task is not None:
                tasks.append(edit.task)
        if tasks:
            await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT_S)
        with contextlib.suppress(Exception):
            await self.broker.unsubscribe(CHANNEL, self._on_broker)

    def health(self) -> dict[str, Any]:
        return {"running": len(self.edits), "finished": self.finished}

    # -- starting ---------------------------------------------------------------------------

    async def start_edit(
        self, *, user_id: uuid.UUID, user_name: str | None, file: dict[str, Any],
        workspace_id: uuid.UUID, selection: tuple[int, int] | None, instruction: str | None,
        replay: str | None = None,
    ) -> dict[str, Any]:
        """Start an edit of ``file`` (its row); ``EditError`` when refused. ``replay``: the
        text to write instead of asking the model (a chat answer applied to the file)."""
        file_id, project_id = file["id"], file["project_id"]
        provider = None
        max_output = self.slot.max_output_tokens
        if replay is None:
            if self.workspace_ai is not None:
                provider = await self.workspace_ai.provider_for(workspace_id)
                max_output = self.config.max_output_tokens
            if provider is None:
                provider, max_output = await self.slot.get(), self.slot.max_output_tokens
            if provider is None:
                raise EditError(*self.slot.unavailable())
        edit_id = uuid.uuid4()
        peer = AssistantPeer(str(edit_id), str(user_id), workspace_id)
        room = await self.documents.join(file_id, peer)
        try:
            self.documents.receive(room, peer, peer.request_state())
            project = None
            if provider is not None:
                async with self.db.service() as conn:
                    project = project_context.render(
                        await project_context.read(conn, project_id, user_id))
            # Held against the allowance: the file and context as they are now, the
            # instruction and the output cap (the prompt itself is built below).
            estimate = 0
            if provider is not None:
                estimate = (estimate_tokens(peer.received_text()) + estimate_tokens(project or "")
                            + estimate_tokens(instruction or "") + 200 + max_output)
            edit = await self._reserve(
                edit_id, file, workspace_id, user_id, user_name, peer, room, selection,
                instruction, estimate, "model" if replay is None else "message",
                provider.model if provider else None,
            )
        except BaseException:
            self.documents.leave(room, peer)
            raise
        # From here to the first update nothing awaits: the range is resolved on the text
        # the peer holds now, the prompt shows that text, and the range goes in this step.
        text = peer.received_text()
        size = len(text.encode("utf-16-le")) // 2
        first, last = selection if selection is not None else (0, size)
        first, last = sorted((max(0, min(first, size)), max(0, min(last, size))))
        edit.selection = (first, last)
        if replay is not None:
            source: AsyncIterator[ProviderEvent] = replay_text(replay)
        else:
            assert provider is not None
            prompt = edit_prompt.build(file["path"], file.get("language"), text,
                                       *_char_range(text, first, last), instruction or "",
                                       project)
            edit.prompt_tokens = estimate_messages(m.content for m in prompt)
            source = provider.stream(prompt, max_tokens=max_output)
        self.documents.receive(room, peer, peer.start(first, last))
        self.documents.receive(room, peer, peer.awareness(peer.presence(user_name)))
        self.edits[edit.id] = edit
        edit.task = asyncio.create_task(self._run(edit, source), name=f"ai-edit-{edit.id}")
        await self._announce(project_id, {"type": "ai_edit.started", "edit": edit.public(
            status="running")})
        return edit.public(status="running")

    async def _reserve(
        self, edit_id: uuid.UUID, file: dict[str, Any], workspace_id: uuid.UUID,
        user_id: uuid.UUID, user_name: str | None, peer: AssistantPeer, room: Any,
        selection: tuple[int, int] | None, instruction: str | None, reserve: int,
        source: str, model: str | None,
    ) -> Edit:
        job_input = {
            "file_id": str(file["id"]), "edit_id": str(edit_id),
            "selection": list(selection) if selection else None, "instruction": instruction,
            "source": source, "provider": self.slot.name, "client_id": peer.client_id,
        }
        insertion = selection is not None and selection[0] == selection[1]
        async with self.db.service() as conn:
            for attempt in range(2):
                try:
                    reserved = await metering.reserve(
                        conn, user_id=user_id, project_id=file["project_id"],
                        job_type="generate" if insertion else "refactor", job_input=job_input,
                        model=model, tokens=reserve, stale_after_s=self.config.stale_job_s,
                        status="running", job_id=edit_id,
                    )
                    break
                except jobs_store.ActiveEditExists:
                    expired = await jobs_store.expire_stale_edits(
                        conn, file["id"], self.config.stale_job_s)
                    if attempt or not expired:
                        raise EditError(
                            "busy", "the assistant is already editing this file") from None
                except metering.QuotaExceeded as exc:
                    raise EditError(exc.code, exc.message, resource="ai_tokens",
                                    limit=exc.limit, used=exc.used, plan=exc.plan) from None
        return Edit(reserved.job_id, file["id"], file["project_id"], workspace_id, user_id,
                    user_name, peer, room, selection or (0, 0), instruction, source, model)

    # -- running ----------------------------------------------------------------------------

    def _send(self, edit: Edit, frame: bytes | None) -> bool:
        """Hand a frame to the hub; False once the hub has closed the peer or made it
        read-only (the person who asked lost access or became a viewer)."""
        if edit.peer.closed or edit.peer.read_only:
            return False
        if frame:
            self.documents.receive(edit.room, edit.peer, frame)
        return not edit.peer.closed

    async def _run(self, edit: Edit, source: AsyncIterator[ProviderEvent]) -> None:
        edit.stream_task = asyncio.create_task(self._pump(edit, source))
        await asyncio.wait({edit.stream_task})
        try:
            await self._finish(edit)
        except Exception:
            log.exception("ai edit %s failed to finish", edit.id)
        finally:
            self.edits.pop(edit.id, None)
            self.documents.leave(edit.room, edit.peer)
            self.finished += 1

    async def _pump(self, edit: Edit, source: AsyncIterator[ProviderEvent]) -> Usage | None:
        fences = edit_prompt.FenceFilter()
        usage: Usage | None = None
        last_progress = last_awareness = 0.0
        batch = PieceBatch(lambda text: self._write(edit, text))
        try:
            async with contextlib.aclosing(source):  # type: ignore[type-var]
                async for event in source:
                    if isinstance(event, Usage):
                        usage = event
                        continue
                    if not isinstance(event, TextDelta):
                        continue  # no tools are offered to an edit
                    if not batch.add(fences.feed(event.text)):
                        break
                    now = time.monotonic()
                    if now - last_awareness >= AWARENESS_S:
                        last_awareness = now
                        self._send(edit, edit.peer.awareness(edit.peer.presence(edit.user_name)))
                    if now - last_progress >= PROGRESS_S:
                        last_progress = now
                        await self._announce(edit.project_id, {
                            "type": "ai_edit.progress", "edit_id": str(edit.id),
                            "chars": edit.chars})
            batch.add(fences.end())
        finally:
            batch.flush()
        return usage

    def _write(self, edit: Edit, piece: str) -> bool:
        if edit.peer.closed or edit.peer.read_only:
            return False
        if not piece:
            return True
        self._send(edit, edit.peer.write(piece))
        if edit.first_char_at is None:
            edit.first_char_at = time.monotonic()
        edit.chars += len(piece)
        return True

    async def _finish(self, edit: Edit) -> None:
        task = edit.stream_task
        assert task is not None
        usage: Usage | None = None
        error: ProviderError | None = None
        if task.cancelled():
            status = "canceled"
        elif task.exception() is not None:
            status = "failed"
            exc = task.exception()
            error = exc if isinstance(exc, ProviderError) else ProviderError(
                "internal_error", "the edit failed")
            if not isinstance(exc, ProviderError):
                log.error("ai edit %s crashed", edit.id, exc_info=exc)
        else:
            stopped = edit.peer.closed or edit.peer.read_only
            status = "canceled" if stopped else "completed"
            usage = task.result()
        rollback = status == "failed" or (status == "canceled" and edit.cancel_mode == "rollback")
        outcome = ("rolled_back" if rollback else "kept" if status == "canceled"
                   else "failed" if status == "failed" else "completed")
        if rollback:
            self._send(edit, edit.peer.rollback())
        self._send(edit, edit.peer.finish(outcome))
        self._send(edit, edit.peer.awareness(None))
        if usage is None and edit.source == "model" and (edit.chars or status != "completed"):
            usage = Usage(edit.prompt_tokens, estimate_tokens("".join(edit.peer.edit.written))
                          if edit.peer.edit else 0, estimated=True, finish_reason=None,
                          model=edit.model or "")
        duration_ms = int((time.monotonic() - edit.started) * 1000)
        latency = (None if edit.first_char_at is None
                   else round((edit.first_char_at - edit.started) * 1000, 1))
        output = {"outcome": outcome, "chars": edit.chars, "first_char_ms": latency,
                  "text": "".join(edit.peer.edit.written) if edit.peer.edit else ""}
        async with self.db.service() as conn:
            await metering.settle(
                conn, edit.id, user_id=edit.user_id, workspace_id=edit.workspace_id,
                status=status, output=output,
                error=f"{error.code}: {error.message}" if error else None, usage=usage,
                model=usage.model if usage else edit.model, duration_ms=duration_ms,
                metadata={"file_id": str(edit.file_id), "edit": True},
            )
        tokens = None if usage is None else {"input": usage.input_tokens,
                                             "output": usage.output_tokens,
                                             "total": usage.total, "estimated": usage.estimated}
        await self._announce(edit.project_id, {"type": "ai_edit.finished", "edit": edit.public(
            status=status, outcome=outcome, tokens=tokens, first_char_ms=latency,
            duration_ms=duration_ms,
            error={"code": error.code, "message": error.message} if error else None)})

    async def _announce(self, project_id: uuid.UUID, event: dict[str, Any]) -> None:
        """An event on the project channel; the edit goes on if the broker is down (its
        text reaches everyone through the document, its record through the API)."""
        try:
            await self.publish(project_id, event)
        except Exception as exc:
            log.warning("ai edit: %s not announced: %r", event["type"], exc)

    # -- cancelling -------------------------------------------------------------------------

    def _cancel(self, edit: Edit, mode: str) -> bool:
        if edit.cancel_mode is not None:
            return False
        edit.cancel_mode = mode
        if edit.stream_task is not None:
            edit.stream_task.cancel()
        return True

    async def cancel(self, edit_id: uuid.UUID, keep: bool) -> bool:
        """Stop an edit on whichever node runs it; False when none here was running (the
        request still goes to the other nodes)."""
        mode = "keep" if keep else "rollback"
        edit = self.edits.get(edit_id)
        if edit is not None:
            return self._cancel(edit, mode)
        await self.broker.publish(CHANNEL, json.dumps(
            {"cancel": str(edit_id), "mode": mode}).encode())
        return False

    async def _on_broker(self, _channel: str, payload: bytes) -> None:
        try:
            message = json.loads(payload)
            edit = self.edits.get(uuid.UUID(message["cancel"]))
        except (ValueError, KeyError, TypeError):
            return
        if edit is not None:
            self._cancel(edit, "keep" if message.get("mode") == "keep" else "rollback")


def _char_range(text: str, start: int, end: int) -> tuple[int, int]:
    """UTF-16 offsets -> character offsets of ``text``."""
    encoded = text.encode("utf-16-le")
    return (len(encoded[: start * 2].decode("utf-16-le", "ignore")),
            len(encoded[: end * 2].decode("utf-16-le", "ignore")))
