"""The project channel: presence, editor sessions and project events, across processes.

One ``ProjectHub`` per process: it serves the sockets of ``/ws/projects/{id}`` (their
outbox is sockets.outbox), publishes project events, re-checks roles and runs the
heartbeat and save loops. Presence across processes is collab/project_presence.py, editor
sessions (debounced saves) collab/editor_sessions.py.

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
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from broker.interface import Broker
from collab import project_metrics as metrics
from collab.config import CollabConfig
from collab.editor_sessions import EditorSessions, EditorSessionStore
from collab.project_presence import EVENT_TAG, Identity, Member, ProjectRoom
from collab.project_protocol import (
    EditorState,
    OpenFileMessage,
    Ping,
    ProtocolError,
    error_message,
    parse_client_message,
)
from sockets.close_codes import FORBIDDEN, GOING_AWAY
from sockets.outbox import Outbox

log = logging.getLogger(__name__)


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
        self.stats = HubStats()
        self.sessions = EditorSessions(store, self.config.save_debounce_s, self.stats)
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        self.broker.on_resubscribe(self._after_resubscribe)
        self._tasks = [
            asyncio.create_task(self._heartbeat_loop(), name="project-hub-heartbeat"),
            asyncio.create_task(self.sessions.run(), name="project-hub-flush"),
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
        await self.sessions.flush(force=True)

    def health(self) -> dict[str, Any]:
        return {
            "projects": len(self.rooms),
            "sockets": sum(len(r.peers) for r in self.rooms.values()),
            "pending_saves": len(self.sessions.pending),
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
        restored = await self.sessions.restore(who.user_id, project_id)
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
                self.sessions.changed(who.user_id, room.project_id, message)
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
            await self.sessions.save_now((who.user_id, room.project_id))
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
