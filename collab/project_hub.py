"""The project channel: presence, editor sessions and project events, across processes.

One ``ProjectHub`` per process. A project with at least one local socket has a
``ProjectRoom``: its local peers and the presence of every other instance, learned over the
broker channel ``project:{id}``. Presence is per connection (two tabs = two entries).

Presence crossing processes: an instance announces ``join``/``update``/``leave`` as they
happen and, every ``heartbeat_s``, a ``beat`` with its full member list for each room; a
receiver replaces that instance's list with it (so dropped messages heal at the next beat)
and forgets an instance not heard from for ``presence_ttl_s`` (a killed process's users
disappear). A room that starts sends ``hello`` so others beat at once.

Editor state (open files, active file, layout) is kept per (user, project), saved through
the store at most once per ``save_debounce_s`` by the hub's flusher task, immediately when
the user's last socket on the project closes, and on shutdown.

Events published by REST (``await hub.publish(project_id, event)``) go to every local socket
of the project and over the broker to every other instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from broker.interface import Broker
from collab import project_metrics as metrics
from collab.config import CollabConfig
from collab.project_protocol import (
    EditorState,
    OpenFileMessage,
    Ping,
    ProtocolError,
    error_message,
    parse_client_message,
    parse_editor_state,
)
from sockets.close_codes import FORBIDDEN, GOING_AWAY
from sockets.outbox import Outbox

log = logging.getLogger(__name__)

# Broker payloads: EVENT_TAG + the event's JSON (relayed as is), else a JSON presence message.
EVENT_TAG = b"\x01"


class EditorSessionStore(Protocol):
    """Storage of the project channel: editor states, and who may still be connected."""

    async def load(self, user_id: uuid.UUID, project_id: uuid.UUID) -> dict[str, Any] | None: ...

    async def save(
        self, user_id: uuid.UUID, project_id: uuid.UUID, state: dict[str, Any]
    ) -> None: ...

    async def project_roles(
        self, pairs: Sequence[tuple[uuid.UUID, uuid.UUID]]
    ) -> dict[tuple[uuid.UUID, uuid.UUID], str | None]: ...


@dataclass(frozen=True)
class ProjectHubConfig:
    heartbeat_s: float = 5.0
    presence_ttl_s: float = 15.0
    save_debounce_s: float = 1.0
    max_message_bytes: int = 64 * 1024
    role_check_s: float = 1.0

    @classmethod
    def from_collab(cls, config: CollabConfig) -> ProjectHubConfig:
        """Presence heals on the same period as documents (``GAP_REPAIR_S``)."""
        return cls(
            heartbeat_s=config.gap_repair_s,
            presence_ttl_s=3 * config.gap_repair_s,
            role_check_s=config.role_check_s,
        )


@dataclass(frozen=True)
class Identity:
    user_id: uuid.UUID
    role: str
    email: str | None = None
    name: str | None = None


@dataclass
class Member:
    connection_id: str
    user_id: str
    role: str
    email: str | None
    name: str | None
    file_id: str | None
    since: float

    def to_json(self) -> dict[str, Any]:
        return {
            "connection_id": self.connection_id,
            "user_id": self.user_id,
            "role": self.role,
            "email": self.email,
            "name": self.name,
            "file_id": self.file_id,
            "since": self.since,
        }

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Member:
        return cls(
            str(body["connection_id"]),
            str(body["user_id"]),
            str(body.get("role", "viewer")),
            body.get("email"),
            body.get("name"),
            body.get("file_id"),
            float(body.get("since", 0.0)),
        )


class Peer:
    """One local socket: its presence entry and its outbox (sockets.outbox: bounded by
    bytes; past the bound it closes as a slow consumer so the client resyncs on reconnect,
    project events are never silently dropped)."""

    def __init__(self, outbox: Outbox, member: Member) -> None:
        self.outbox = outbox
        self.member = member
        self.left = asyncio.Event()

    @property
    def closed(self) -> bool:
        return self.outbox.closed

    def send(self, text: str) -> None:
        self.outbox.send_text(text)

    def close_later(self, code: int, reason: str) -> None:
        self.outbox.close(code, reason)


class ProjectRoom:
    """Local peers of one project plus the presence other instances reported."""

    def __init__(self, hub: ProjectHub, project_id: uuid.UUID) -> None:
        self.hub = hub
        self.project_id = project_id
        self.channel = f"project:{project_id}"
        self.peers: dict[str, Peer] = {}
        self.remote: dict[str, dict[str, Member]] = {}
        self.remote_seen: dict[str, float] = {}

    # -- fan-out ----------------------------------------------------------------------

    def broadcast(self, body: dict[str, Any], *, exclude: str | None = None) -> None:
        self.broadcast_text(json.dumps(body), exclude=exclude)

    def broadcast_text(self, text: str, *, exclude: str | None = None) -> None:
        """The same encoded frame to every local peer (encoded once)."""
        for connection_id, peer in list(self.peers.items()):
            if connection_id != exclude:
                peer.send(text)

    async def announce(self, kind: str, **body: Any) -> None:
        message = {"k": kind, "i": self.hub.instance_id, **body}
        await self.hub.broker.publish(self.channel, json.dumps(message).encode())

    def members(self) -> list[Member]:
        local = [peer.member for peer in self.peers.values()]
        remote = [m for members in self.remote.values() for m in members.values()]
        return sorted(local + remote, key=lambda m: (m.since, m.connection_id))

    # -- broker messages ---------------------------------------------------------------

    async def on_broker(self, _channel: str, payload: bytes) -> None:
        if payload[:1] == EVENT_TAG:  # the hot path (run output, file tree): no parsing
            self.broadcast_text(payload[1:].decode())
            return
        try:
            message = json.loads(payload)
            kind = message["k"]
            instance = str(message["i"])
        except (ValueError, KeyError, TypeError):
            log.warning("project %s: malformed broker message dropped", self.project_id)
            return
        if instance == self.hub.instance_id:
            return
        if kind == "hello":
            await self.beat()
            return
        self.remote_seen[instance] = time.monotonic()
        known = self.remote.setdefault(instance, {})
        if kind in ("join", "update"):
            member = Member.from_json(message["m"])
            is_new = member.connection_id not in known
            known[member.connection_id] = member
            self.broadcast(
                {
                    "type": "presence.join" if is_new else "presence.update",
                    "member": member.to_json(),
                }
            )
        elif kind == "leave":
            gone = known.pop(str(message["c"]), None)
            if gone is not None:
                self._send_leave(gone)
        elif kind == "beat":
            self._replace_remote(instance, [Member.from_json(m) for m in message["m"]])
        elif kind == "bye":
            self._replace_remote(instance, [])
            self.remote.pop(instance, None)
            self.remote_seen.pop(instance, None)

    def _replace_remote(self, instance: str, members: Iterable[Member]) -> None:
        known = self.remote.setdefault(instance, {})
        fresh = {m.connection_id: m for m in members}
        for connection_id, member in list(known.items()):
            if connection_id not in fresh:
                del known[connection_id]
                self._send_leave(member)
        for connection_id, member in fresh.items():
            old = known.get(connection_id)
            known[connection_id] = member
            if old is None:
                self.broadcast({"type": "presence.join", "member": member.to_json()})
            elif (old.file_id, old.role) != (member.file_id, member.role):
                self.broadcast({"type": "presence.update", "member": member.to_json()})

    def _send_leave(self, member: Member) -> None:
        self.broadcast(
            {
                "type": "presence.leave",
                "connection_id": member.connection_id,
                "user_id": member.user_id,
            }
        )

    async def beat(self) -> None:
        await self.announce("beat", m=[peer.member.to_json() for peer in self.peers.values()])

    def expire(self, now: float) -> None:
        ttl = self.hub.config.presence_ttl_s
        for instance, seen in list(self.remote_seen.items()):
            if now - seen > ttl:
                log.info("project %s: instance %s expired", self.project_id, instance)
                self._replace_remote(instance, [])
                self.remote.pop(instance, None)
                del self.remote_seen[instance]


@dataclass
class PendingSave:
    state: EditorState
    changed_at: float
    user_id: uuid.UUID
    project_id: uuid.UUID


@dataclass
class HubStats:
    sockets: int = 0
    messages_in: int = 0
    errors_sent: int = 0
    events_published: int = 0
    saves: int = 0
    save_failures: int = 0


class ProjectHub:
    def __init__(
        self,
        broker: Broker,
        store: EditorSessionStore,
        config: ProjectHubConfig | None = None,
    ) -> None:
        self.broker = broker
        self.store = store
        self.config = config or ProjectHubConfig()
        self.instance_id = broker.instance_id
        self.rooms: dict[uuid.UUID, ProjectRoom] = {}
        self.pending: dict[tuple[uuid.UUID, uuid.UUID], PendingSave] = {}
        self.stats = HubStats()
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        self.broker.on_resubscribe(self._after_resubscribe)
        self._tasks = [
            asyncio.create_task(self._heartbeat_loop(), name="project-hub-heartbeat"),
            asyncio.create_task(self._flush_loop(), name="project-hub-flush"),
            asyncio.create_task(self._role_loop(), name="project-hub-roles"),
        ]

    async def close(self) -> None:
        """Stop the tasks, tell the other instances, save pending state, close sockets."""
        self._closing = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        leaving: list[asyncio.Task[bool]] = []
        for room in list(self.rooms.values()):
            with contextlib.suppress(Exception):
                await room.announce("bye")
            for peer in list(room.peers.values()):
                peer.close_later(GOING_AWAY, "server shutting down")
                leaving.append(asyncio.create_task(peer.left.wait()))
        if leaving:  # the sockets' own tasks leave their rooms (and save their state)
            _done, slow = await asyncio.wait(leaving, timeout=2.0)
            for waiter in slow:
                waiter.cancel()
        await self._flush(force=True)

    def health(self) -> dict[str, Any]:
        return {
            "projects": len(self.rooms),
            "sockets": sum(len(r.peers) for r in self.rooms.values()),
            "pending_saves": len(self.pending),
        }

    # -- REST-facing -------------------------------------------------------------------

    async def publish(self, project_id: uuid.UUID, event: dict[str, Any]) -> None:
        """Deliver ``event`` (needs ``type``) to every socket of the project on every node."""
        if not isinstance(event.get("type"), str):
            raise ValueError("a project event needs a string 'type'")
        text = json.dumps(event, default=str)  # UUIDs, datetimes -> strings; encoded once
        self.stats.events_published += 1
        metrics.EVENTS.inc()
        room = self.rooms.get(project_id)
        if room is not None:
            room.broadcast_text(text)
        await self.broker.publish(f"project:{project_id}", EVENT_TAG + text.encode())

    # -- one socket ---------------------------------------------------------------------

    async def serve(
        self, project_id: uuid.UUID, outbox: Outbox, incoming: AsyncIterator[str | bytes],
        who: Identity,
    ) -> None:
        """Run one accepted socket until it closes (``incoming``: sockets.receive.messages)."""
        if self._closing:
            outbox.close(GOING_AWAY, "server shutting down")
            return
        restored = await self._restore(who.user_id, project_id)
        member = Member(
            connection_id=uuid.uuid4().hex,
            user_id=str(who.user_id),
            role=who.role,
            email=who.email,
            name=who.name,
            file_id=str(restored.active_file_id)
            if restored and restored.active_file_id
            else None,
            since=time.time(),
        )
        peer = Peer(outbox, member)
        room = await self._room(project_id)
        hello = {
            "type": "hello",
            "connection_id": member.connection_id,
            "instance_id": self.instance_id,
            "project_id": str(project_id),
            "user_id": member.user_id,
            "role": who.role,
            "presence": [m.to_json() for m in room.members()] + [member.to_json()],
            "editor_state": restored.to_json() if restored else None,
        }
        peer.send(json.dumps(hello))
        room.peers[member.connection_id] = peer
        self.stats.sockets += 1
        metrics.SOCKETS.inc()
        room.broadcast(
            {"type": "presence.join", "member": member.to_json()}, exclude=member.connection_id
        )
        await room.announce("join", m=member.to_json())
        try:
            await self._read(room, peer, who, incoming)
        finally:
            await self._leave(room, peer, who)

    async def _read(
        self, room: ProjectRoom, peer: Peer, who: Identity, incoming: AsyncIterator[str | bytes]
    ) -> None:
        async for frame in incoming:
            if peer.closed:
                return
            self.stats.messages_in += 1
            try:
                message = parse_client_message(frame, self.config.max_message_bytes)
            except ProtocolError as exc:
                self.stats.errors_sent += 1
                metrics.ERRORS.labels(exc.code).inc()
                log.info(
                    "project %s socket %s user %s: %s",
                    room.project_id, peer.member.connection_id, who.user_id, exc.message,
                )
                peer.send(json.dumps(error_message(exc.code, exc.message)))
                continue
            if isinstance(message, Ping):
                peer.send('{"type": "pong"}')
            elif isinstance(message, OpenFileMessage):
                await self._set_file(room, peer, message.file_id)
            elif isinstance(message, EditorState):
                key = (who.user_id, room.project_id)
                self.pending[key] = PendingSave(
                    message, time.monotonic(), who.user_id, room.project_id
                )
                await self._set_file(room, peer, message.active_file_id)

    async def _set_file(self, room: ProjectRoom, peer: Peer, file_id: uuid.UUID | None) -> None:
        value = str(file_id) if file_id else None
        if peer.member.file_id == value:
            return
        peer.member.file_id = value
        body = peer.member.to_json()
        room.broadcast(
            {"type": "presence.update", "member": body}, exclude=peer.member.connection_id
        )
        await room.announce("update", m=body)

    async def _leave(self, room: ProjectRoom, peer: Peer, who: Identity) -> None:
        connection_id = peer.member.connection_id
        room.peers.pop(connection_id, None)
        self.stats.sockets -= 1
        metrics.SOCKETS.dec()
        await peer.outbox.finish()
        room.broadcast(
            {"type": "presence.leave", "connection_id": connection_id, "user_id": str(who.user_id)}
        )
        with contextlib.suppress(Exception):
            await room.announce("leave", c=connection_id)
        still_here = any(p.member.user_id == str(who.user_id) for p in room.peers.values())
        if not still_here:
            await self._save_now((who.user_id, room.project_id))
        if not room.peers and self.rooms.get(room.project_id) is room:
            del self.rooms[room.project_id]
            await self.broker.unsubscribe(room.channel, room.on_broker)
        peer.left.set()

    async def _room(self, project_id: uuid.UUID) -> ProjectRoom:
        room = self.rooms.get(project_id)
        if room is not None:
            return room
        room = ProjectRoom(self, project_id)
        self.rooms[project_id] = room
        await self.broker.subscribe(room.channel, room.on_broker)
        await room.announce("hello")
        return room

    # -- editor state ------------------------------------------------------------------

    async def _restore(self, user_id: uuid.UUID, project_id: uuid.UUID) -> EditorState | None:
        pending = self.pending.get((user_id, project_id))
        if pending is not None:
            return pending.state
        try:
            row = await self.store.load(user_id, project_id)
        except Exception:
            log.exception("editor state of user %s project %s not loaded", user_id, project_id)
            return None
        if row is None:
            return None
        try:
            return parse_editor_state(row)
        except ProtocolError:
            return None

    async def _save_now(self, key: tuple[uuid.UUID, uuid.UUID]) -> None:
        pending = self.pending.pop(key, None)
        if pending is None:
            return
        try:
            await self.store.save(pending.user_id, pending.project_id, pending.state.to_json())
            self.stats.saves += 1
            metrics.SAVES.labels("ok").inc()
        except Exception:
            self.stats.save_failures += 1
            metrics.SAVES.labels("failed").inc()
            log.exception("editor state of user %s not saved; retrying", pending.user_id)
            self.pending.setdefault(key, pending)

    async def _flush(self, *, force: bool) -> None:
        now = time.monotonic()
        due = [
            key
            for key, p in self.pending.items()
            if force or now - p.changed_at >= self.config.save_debounce_s
        ]
        for key in due:
            await self._save_now(key)

    async def _flush_loop(self) -> None:
        interval = max(0.05, self.config.save_debounce_s / 4)
        while True:
            await asyncio.sleep(interval)
            await self._flush(force=False)

    # -- access ------------------------------------------------------------------------

    async def _role_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.role_check_s)
            try:
                await self.check_roles()
            except Exception:
                log.exception("project channel role check failed")

    async def check_roles(self) -> None:
        """Close sockets of users who lost access (4403); follow role changes in presence."""
        pairs = {
            (uuid.UUID(peer.member.user_id), room.project_id)
            for room in self.rooms.values()
            for peer in room.peers.values()
        }
        if not pairs:
            return
        roles = await self.store.project_roles(sorted(pairs, key=str))
        for room in list(self.rooms.values()):
            for peer in list(room.peers.values()):
                key = (uuid.UUID(peer.member.user_id), room.project_id)
                if key not in pairs:
                    continue  # joined while the query ran: its role was checked on connect
                role = roles.get(key)
                if role is None:
                    peer.close_later(FORBIDDEN, "access revoked")
                elif role != peer.member.role:
                    peer.member.role = role
                    body = peer.member.to_json()
                    room.broadcast({"type": "presence.update", "member": body})
                    await room.announce("update", m=body)

    # -- presence across instances -----------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.heartbeat_s)
            now = time.monotonic()
            for room in list(self.rooms.values()):
                room.expire(now)
                try:
                    await room.beat()
                except Exception:
                    log.exception("project %s heartbeat failed", room.project_id)

    async def _after_resubscribe(self) -> None:
        for room in list(self.rooms.values()):
            await room.announce("hello")
            await room.beat()
