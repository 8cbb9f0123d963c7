"""Presence on the project channel, across processes.

A project with at least one local socket has a ``ProjectRoom``: its local peers and the
presence of every other instance, learned over the broker channel ``project:{id}``.
Presence is per connection (two tabs = two entries).

An instance announces ``join``/``update``/``leave`` as they happen and, every
``heartbeat_s``, a ``beat`` with its full member list for each room; a receiver replaces
that instance's list with it (so dropped messages heal at the next beat) and forgets an
instance not heard from for ``presence_ttl_s`` (a killed process's users disappear). A room
that starts sends ``hello`` so others beat at once. Project events (``EVENT_TAG`` + JSON)
are relayed to the local peers as they are.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collab.project_hub import Peer, ProjectHub

log = logging.getLogger(__name__)

# Broker payloads: EVENT_TAG + the event's JSON (relayed as is), else a JSON presence message.
EVENT_TAG = b"\x01"


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
