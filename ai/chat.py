"""The chat hub: one reply at a time per conversation, streamed to every watcher.

Why over 400 lines: a reply's life (prepare, stream, finish, cancel) and its relay between
processes (owner, mirrors, snapshots for late joiners) share one ``Room``/``Reply`` state
and its lock; watchers and the reply's context are already apart (chat_watchers.py,
chat_context.py).

A *watcher* is one listening client (a WebSocket or an SSE response; ai/chat_watchers.py).
Each event is encoded once and pushed to every local watcher, then published on the
broker channel ``conv:{id}`` so watchers on other processes get it too. What a reply is
given besides the conversation (file, web page, project, tools) is ai/chat_context.py.

The process that accepted the user's message owns the reply (``Reply``): it stores the
messages, calls the provider, records the job and the usage. Other processes keep a
``Mirror`` of the reply from the broker events so their late joiners can catch up; a
process that starts watching mid-reply asks the owner for a snapshot (``sync_request``).
``cancel`` from any process reaches the owner, which closes the provider stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ai.chat_context import ChatError, ContextRequest, ReplyContext, parse_context
from ai.chat_watchers import Delta, Stream, Watcher, encode
from ai.config import AIConfig
from ai.project_tools import CodeRunner, DocumentText, ProjectToolbox
from ai.prompt import EditorContext, build_prompt
from ai.providers.base import ChatMessage, Provider, ProviderError, Usage
from ai.registry import ProviderSlot, provider_slot
from ai.tokens import estimate_tokens
from ai.tool_loop import ToolRecord, converse
from ai.workspace_keys import WorkspaceAI
from broker.interface import Broker
from observability.timings import AI_RESPONSE, Timings
from persistence import ai as store
from persistence.db import Database

log = logging.getLogger(__name__)

WRITE_ROLES = frozenset({"owner", "admin", "member"})
EVENT_PREFIX = b"e"
CLOSE_TIMEOUT_S = 10.0


@dataclass
class Reply(Stream):
    """A reply this process generates."""

    conversation: store.ConversationInfo | None = None
    user_id: uuid.UUID | None = None
    job_id: uuid.UUID | None = None
    prompt_tokens: int = 0
    started: float = 0.0
    first_token_at: float | None = None
    task: asyncio.Task[None] | None = None
    stream_task: asyncio.Task[Usage | None] | None = None
    cancel_reason: str | None = None
    # Tools the reply may call (providers with tool calling), and the calls it made.
    toolbox: ProjectToolbox | None = None
    tool_records: list[ToolRecord] = field(default_factory=list)
    # Set once watchers have the reply's message_created: its first delta waits for it
    # (the provider request itself does not).
    announced: asyncio.Event = field(default_factory=asyncio.Event)
    max_output_tokens: int = 0


class Room:
    """The watchers of one conversation on this process, and its reply if any."""

    def __init__(self, conversation_id: uuid.UUID) -> None:
        self.id = conversation_id
        self.channel = f"conv:{conversation_id}"
        self.watchers: set[Watcher] = set()
        self.reply: Reply | None = None
        self.mirror: Stream | None = None
        self.reserved = False
        self.subscribed = False
        self.awaiting_snapshot: set[Watcher] = set()
        self.lock = asyncio.Lock()

    @property
    def streaming(self) -> Stream | None:
        return self.reply or self.mirror

    @property
    def idle(self) -> bool:
        return not self.watchers and self.reply is None and not self.reserved


class ChatHub:
    def __init__(
        self,
        db: Database,
        broker: Broker,
        slot: ProviderSlot,
        config: AIConfig,
        workspace_ai: WorkspaceAI | None = None,
        timings: Timings | None = None,
        *,
        documents: DocumentText | None = None,
        executions: CodeRunner | None = None,
    ) -> None:
        self.db = db
        self.broker = broker
        self.slot = slot
        self.config = config
        self.workspace_ai = workspace_ai
        # The project's live texts (prompt context, read_file) and runs (run_code).
        self.context = ReplyContext(db, config, workspace_ai, documents, executions)
        # Time to first token and tokens/s of every reply (performance_metrics).
        self.timings = timings
        self.rooms: dict[uuid.UUID, Room] = {}
        self.replies_started = 0

    @classmethod
    def from_config(
        cls, db: Database, broker: Broker, config: AIConfig, data_dir: Path,
        workspace_ai: WorkspaceAI | None = None,
        timings: Timings | None = None,
        *,
        documents: DocumentText | None = None,
        executions: CodeRunner | None = None,
    ) -> ChatHub:
        return cls(
            db, broker, provider_slot(config, data_dir), config, workspace_ai, timings,
            documents=documents, executions=executions,
        )

    # -- lifetime ---------------------------------------------------------------------

    async def start(self) -> None:
        """Starts the provider (the embedded model launches in the background)."""
        await self.slot.start()

    async def close(self) -> None:
        """Cancels running replies (their partial answers are stored), then stops."""
        tasks = []
        for room in self.rooms.values():
            if room.reply is not None:
                self._cancel_reply(room.reply, "shutdown")
                if room.reply.task is not None:
                    tasks.append(room.reply.task)
        if tasks:
            await asyncio.wait(tasks, timeout=CLOSE_TIMEOUT_S)
        for room in list(self.rooms.values()):
            for watcher in list(room.watchers):
                watcher.close()
            if room.subscribed:
                room.subscribed = False
                with contextlib.suppress(Exception):
                    await self.broker.unsubscribe(room.channel, self._on_broker)
        self.rooms.clear()
        await self.slot.close()
        if self.workspace_ai is not None:
            await self.workspace_ai.close()

    def health(self) -> dict[str, Any]:
        report = self.slot.health()
        report["streaming"] = sum(1 for room in self.rooms.values() if room.reply)
        report["watchers"] = sum(len(room.watchers) for room in self.rooms.values())
        return report

    # -- watching ---------------------------------------------------------------------

    def _room(self, conversation_id: uuid.UUID) -> Room:
        room = self.rooms.get(conversation_id)
        if room is None:
            room = self.rooms[conversation_id] = Room(conversation_id)
        return room

    async def watch(self, conversation_id: uuid.UUID, watcher: Watcher) -> None:
        """Add a watcher; a reply in progress is replayed to it first (text so far)."""
        room = self._room(conversation_id)
        streaming = room.streaming
        if streaming is not None:
            for frame in streaming.catch_up():
                watcher.push(frame)
        room.watchers.add(watcher)
        async with room.lock:
            if room.subscribed or watcher not in room.watchers:
                return
            room.subscribed = True
            try:
                await self.broker.subscribe(room.channel, self._on_broker)
            except Exception:
                log.exception("chat: subscribing to %s failed", room.channel)
                room.subscribed = False
                return
            if room.reply is None:
                # Another process may be mid-reply: ask its owner for the text so far.
                room.awaiting_snapshot.add(watcher)
                await self._publish(room, {"kind": "sync_request"})

    async def unwatch(self, conversation_id: uuid.UUID, watcher: Watcher) -> None:
        watcher.close()
        room = self.rooms.get(conversation_id)
        if room is None:
            return
        room.watchers.discard(watcher)
        room.awaiting_snapshot.discard(watcher)
        await self._maybe_release(room)

    async def _maybe_release(self, room: Room) -> None:
        if not room.idle:
            return
        async with room.lock:
            if not room.idle:
                return
            if room.subscribed:
                room.subscribed = False
                with contextlib.suppress(Exception):
                    await self.broker.unsubscribe(room.channel, self._on_broker)
            if room.idle and self.rooms.get(room.id) is room:
                del self.rooms[room.id]

    # -- fan-out ----------------------------------------------------------------------

    async def _emit(self, room: Room, event: dict[str, Any]) -> None:
        frame = encode(event)
        item: str | Delta = frame
        if event["type"] == "delta":
            item = Delta(event["message_id"], event["seq"], event["text"], frame)
        for watcher in tuple(room.watchers):
            watcher.push(item)
        try:
            await self.broker.publish(room.channel, EVENT_PREFIX + frame.encode())
        except Exception as exc:  # fan-out to other nodes is best effort; locals have it
            log.debug("chat: publish on %s failed: %r", room.channel, exc)

    async def _publish(self, room: Room, control: dict[str, Any]) -> None:
        try:
            await self.broker.publish(room.channel, json.dumps(control).encode())
        except Exception as exc:
            log.debug("chat: publish on %s failed: %r", room.channel, exc)

    async def _on_broker(self, channel: str, payload: bytes) -> None:
        try:
            conversation_id = uuid.UUID(channel.rsplit(":", 1)[1])
        except ValueError:
            return
        room = self.rooms.get(conversation_id)
        if room is None:
            return
        if payload[:1] == EVENT_PREFIX:
            frame = payload[1:].decode()
            event = json.loads(frame)
            if self._mirror(room, event):
                item: str | Delta = frame
                if event.get("type") == "delta":
                    item = Delta(event["message_id"], event["seq"], event["text"], frame)
                for watcher in tuple(room.watchers):
                    watcher.push(item)
            return
        control = json.loads(payload)
        kind = control.get("kind")
        if kind == "cancel" and room.reply is not None:
            self._cancel_reply(room.reply, "user")
        elif kind == "sync_request" and room.reply is not None:
            reply = room.reply
            await self._publish(room, {
                "kind": "snapshot", "message": reply.message, "text": "".join(reply.parts),
                "seq": reply.seq,
            })
        elif kind == "snapshot" and room.streaming is None and room.awaiting_snapshot:
            mirror = Stream(control["message"], [control["text"]] if control["text"] else [],
                            int(control["seq"]))
            room.mirror = mirror
            for watcher in room.awaiting_snapshot:
                for frame in mirror.catch_up():
                    watcher.push(frame)
            room.awaiting_snapshot.clear()

    def _mirror(self, room: Room, event: dict[str, Any]) -> bool:
        """Track another process's reply; False for events to drop (already seen)."""
        kind = event.get("type")
        if kind == "message_created":
            message = event.get("message") or {}
            if message.get("role") == "assistant":
                room.mirror = Stream(message)
                room.awaiting_snapshot.clear()
            return True
        if kind == "delta":
            mirror = room.mirror
            if mirror is None or mirror.message_id != event.get("message_id"):
                return False
            if int(event.get("seq", 0)) <= mirror.seq:
                return False
            mirror.seq = int(event["seq"])
            mirror.parts.append(str(event.get("text", "")))
            return True
        if kind in ("done", "error"):
            room.mirror = None
        return True

    # -- sending ----------------------------------------------------------------------

    async def submit(
        self,
        conversation_id: uuid.UUID,
        user_id: uuid.UUID,
        role: str | None,
        content: Any,
        raw_context: Any = None,
    ) -> dict[str, Any]:
        """Store the user's message and start the reply; ``ChatError`` when refused.

        Returns ``{"user_message", "message"}`` (the assistant placeholder).
        """
        if role not in WRITE_ROLES:
            raise ChatError("forbidden", "viewers can read this conversation but not send")
        if not isinstance(content, str) or not content.strip():
            raise ChatError("bad_request", "content must be a non-empty string")
        if len(content) > self.config.max_message_chars:
            raise ChatError("bad_request", "message too long")
        context_request = parse_context(raw_context)
        room = self._room(conversation_id)
        if room.streaming is not None or room.reserved:
            raise ChatError("busy", "the assistant is still answering in this conversation")
        room.reserved = True
        try:
            page = await self.context.web_page(room.id, context_request)
            reply, user_message, prompt, provider = await self._prepare(
                room, user_id, content, raw_context, context_request, page
            )
            room.reply = reply
        finally:
            room.reserved = False
            if room.reply is None:
                await self._maybe_release(room)
        self.replies_started += 1
        # The provider request goes out while the messages are announced (fan-out to every
        # watcher and the broker); deltas wait for the announcement.
        reply.task = asyncio.create_task(
            self._run(room, reply, provider, prompt), name=f"chat-reply-{conversation_id}"
        )
        try:
            await self._emit(room, {"type": "message_created", "message": user_message})
            await self._emit(room, {"type": "message_created", "message": reply.message})
        finally:
            reply.announced.set()
        return {"user_message": user_message, "message": reply.message}

    async def _prepare(
        self,
        room: Room,
        user_id: uuid.UUID,
        content: str,
        raw_context: Any,
        context_request: ContextRequest | None,
        page: EditorContext | None = None,
    ) -> tuple[Reply, dict[str, Any], list[ChatMessage], Provider]:
        async with self.db.acquire() as conn:
            checks = await store.reply_checks(
                conn, room.id, user_id, self.config.history_messages
            )
            if checks is None:
                raise ChatError("not_found", "no such conversation")
            conversation = checks.conversation
            if conversation.is_archived:
                raise ChatError("archived", "this conversation is archived: unarchive it to ask")
            limit, used = checks.ai_token_limit, checks.ai_tokens_used
            if limit is not None and used >= limit:
                raise ChatError(
                    "quota_exceeded",
                    f"your plan's AI allowance for this month is used up ({used}/{limit} tokens)",
                    resource="ai_tokens", limit=limit, used=used, plan=checks.plan,
                )
            # The workspace's own key, if it has one; else the server's provider.
            provider = (
                await self.workspace_ai.provider_for(conversation.workspace_id)
                if self.workspace_ai is not None else None
            )
            context_tokens, max_output = (
                (self.config.context_tokens, self.config.max_output_tokens)
                if provider is not None
                else (self.slot.context_tokens, self.slot.max_output_tokens)
            )
            provider = provider or await self.slot.get()
            if provider is None:
                raise ChatError(*self.slot.unavailable())
            editor = page
            if context_request is not None and context_request.file_id is not None:
                editor = await self.context.editor_context(conn, conversation, context_request)
            toolbox = self.context.toolbox(provider, conversation.project_id, user_id)
            project = await self.context.project_text(conn, conversation.project_id, user_id,
                                                  toolbox)
            prompt = build_prompt(
                checks.history, content, context=editor,
                budget_tokens=context_tokens - max_output,
                max_context_chars=self.config.max_context_chars,
                system_prompt=self.config.system_prompt, project=project,
            )
            # What this reply may cost at most: its prompt and the output cap (and with
            # tools, their token budget). Held against the allowance while it runs, so
            # parallel requests cannot overspend it.
            reserve = prompt.tokens + max_output
            if toolbox is not None:
                reserve += self.config.tool_budget.max_tokens
            job_input = {
                "conversation_id": str(room.id),
                "content_chars": len(content),
                "context": raw_context if isinstance(raw_context, dict) else None,
                "provider": provider.name,
            }
            try:
                job_id, user_message, placeholder = await store.start_reply(
                    conn, user_id, conversation, job_input, content,
                    {"context": raw_context} if raw_context else {}, provider.model,
                    self.config.stale_job_s, token_limit=limit, reserve_tokens=reserve,
                )
            except store.ActiveJobExists:
                raise ChatError(
                    "busy", "the assistant is still answering in this conversation"
                ) from None
            except store.AllowanceExhausted as exc:
                raise ChatError(
                    "quota_exceeded",
                    "your plan's AI allowance for this month cannot hold this reply "
                    f"({exc.committed} of {exc.limit} tokens used or reserved by replies still "
                    f"running, {reserve} needed)",
                    resource="ai_tokens", limit=exc.limit, used=exc.committed, plan=exc.plan,
                ) from None
        reply = Reply(placeholder, conversation=conversation, user_id=user_id, job_id=job_id,
                      prompt_tokens=prompt.tokens, started=time.monotonic(),
                      max_output_tokens=max_output, toolbox=toolbox)
        return reply, user_message, prompt.messages, provider

    async def cancel(self, conversation_id: uuid.UUID, role: str | None) -> bool:
        """Stop the reply in progress (on whichever process runs it)."""
        if role not in WRITE_ROLES:
            raise ChatError("forbidden", "viewers cannot cancel replies")
        room = self.rooms.get(conversation_id)
        if room is None:
            return False
        if room.reply is not None:
            return self._cancel_reply(room.reply, "user")
        if room.mirror is not None:
            await self._publish(room, {"kind": "cancel"})
            return True
        return False

    def _cancel_reply(self, reply: Reply, reason: str) -> bool:
        if reply.cancel_reason is not None:
            return False
        reply.cancel_reason = reason
        if reply.stream_task is not None:
            reply.stream_task.cancel()
        return True

    # -- the reply --------------------------------------------------------------------

    async def _run(
        self, room: Room, reply: Reply, provider: Provider, prompt: list[ChatMessage]
    ) -> None:
        assert reply.job_id is not None
        try:
            # The job was stored as running: nothing else goes to the database (or competes
            # for this loop) while the provider request is on its way.
            reply.stream_task = asyncio.create_task(self._pump(room, reply, provider, prompt))
            if reply.cancel_reason is not None:
                reply.stream_task.cancel()
            await asyncio.wait({reply.stream_task})
            await self._finish(room, reply, provider)
        except Exception:
            log.exception("chat: reply %s in %s failed to finish", reply.message_id, room.id)
            room.reply = None
            await self._emit(room, {
                "type": "error", "code": "internal_error", "message": "the reply failed",
                "message_id": reply.message_id,
            })
        finally:
            if room.reply is reply:
                room.reply = None
            await self._maybe_release(room)

    async def _pump(
        self, room: Room, reply: Reply, provider: Provider, prompt: list[ChatMessage]
    ) -> Usage | None:
        async def on_text(text: str) -> None:
            if reply.first_token_at is None:
                reply.first_token_at = time.monotonic()
                await reply.announced.wait()
            reply.parts.append(text)
            reply.seq += 1
            await self._emit(room, {
                "type": "delta", "message_id": reply.message_id, "seq": reply.seq, "text": text,
            })

        async def on_tool_call(record: ToolRecord) -> None:
            await reply.announced.wait()
            await self._emit(room, {"type": "tool_call", "message_id": reply.message_id,
                                    "step": record.step, "call": record.call_json()})

        async def on_tool_result(record: ToolRecord) -> None:
            await self._emit(room, {
                "type": "tool_result", "message_id": reply.message_id, "call_id": record.call.id,
                "ok": record.ok, "summary": record.summary, "duration_ms": record.duration_ms,
            })

        outcome = await converse(
            provider, prompt, max_tokens=reply.max_output_tokens, toolbox=reply.toolbox,
            budget=self.config.tool_budget, on_text=on_text, on_tool_call=on_tool_call,
            on_tool_result=on_tool_result,
        )
        reply.tool_records = outcome.records
        return outcome.usage

    def _observe(self, reply: Reply, usage: Usage | None, finished: float) -> None:
        if self.timings is None or reply.first_token_at is None:
            return
        tags = (("provider", self.slot.name),)
        self.timings.observe(AI_RESPONSE, "ai.time_to_first_token",
                             (reply.first_token_at - reply.started) * 1000, tags=tags)
        streaming_s = finished - reply.first_token_at
        if usage is not None and usage.output_tokens > 0 and streaming_s > 0:
            self.timings.observe(AI_RESPONSE, "ai.tokens_per_second",
                                 usage.output_tokens / streaming_s, unit="tokens/s", tags=tags)

    async def _finish(self, room: Room, reply: Reply, provider: Provider) -> None:
        assert reply.stream_task is not None and reply.job_id is not None
        assert reply.conversation is not None and reply.user_id is not None
        task = reply.stream_task
        usage: Usage | None = None
        error: ProviderError | None = None
        if task.cancelled():
            status = "canceled"
        elif task.exception() is not None:
            status = "failed"
            exc = task.exception()
            if isinstance(exc, ProviderError):
                error = exc
            else:
                log.error("chat: provider stream crashed", exc_info=exc)
                error = ProviderError("internal_error", "the reply failed")
        else:
            status = "completed"
            usage = task.result()
        text = "".join(reply.parts)
        if usage is None and (text or status == "canceled"):
            # Cut short: the provider reported nothing, count what was sent and received.
            usage = Usage(
                reply.prompt_tokens, estimate_tokens(text),
                estimated=True, finish_reason=None, model=provider.model,
            )
        finished = time.monotonic()
        duration_ms = int((finished - reply.started) * 1000)
        self._observe(reply, usage, finished)
        latency = (
            None if reply.first_token_at is None
            else round((reply.first_token_at - reply.started) * 1000, 1)
        )
        finish_reason = (
            "cancelled" if status == "canceled"
            else "error" if status == "failed"
            else (usage.finish_reason if usage else None)
        )
        model = usage.model if usage else provider.model
        metadata: dict[str, Any] = {
            "finish_reason": finish_reason,
            "latency_to_first_token_ms": latency,
            "cancelled": status == "canceled",
            "failed_partway": status == "failed" and bool(text),
            "duration_ms": duration_ms,
            "provider": provider.name,
        }
        if reply.cancel_reason == "shutdown":
            metadata["cancelled_by"] = "shutdown"
        if usage is not None:
            metadata.update(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
                            tokens_estimated=usage.estimated)
        if error is not None:
            metadata["error"] = {"code": error.code, "message": error.message}
        if reply.tool_records:
            metadata["tool_calls"] = [record.to_json() for record in reply.tool_records]
        async with self.db.acquire() as conn, conn.transaction():
            message = await store.finish_message(
                conn, uuid.UUID(reply.message_id), text, metadata,
                usage.output_tokens if usage else None, model,
            )
            await store.finish_job(
                conn, reply.job_id, status=status,
                output={"message_id": reply.message_id, "chars": len(text),
                        "finish_reason": finish_reason},
                error=f"{error.code}: {error.message}" if error else None,
                tokens_used=usage.total if usage else None, model=model,
                duration_ms=duration_ms,
            )
            if usage is not None and usage.total > 0:
                await store.record_ai_tokens(
                    conn, reply.user_id, reply.conversation.workspace_id, usage.total,
                    {"conversation_id": str(room.id), "message_id": reply.message_id,
                     "job_id": str(reply.job_id), "model": model, "provider": provider.name,
                     "input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
                     "estimated": usage.estimated},
                )
        room.reply = None
        tokens = None if usage is None else {
            "input": usage.input_tokens, "output": usage.output_tokens, "total": usage.total,
            "estimated": usage.estimated,
        }
        if error is not None:
            await self._emit(room, {
                "type": "error", "code": error.code, "message": error.message,
                "message_id": reply.message_id, "message_record": message, "tokens": tokens,
            })
        else:
            await self._emit(room, {
                "type": "done", "message_id": reply.message_id, "message": message,
                "tokens": tokens, "model": model, "cancelled": status == "canceled",
            })
