"""One membership-change path for every open socket: documents, project channel, chat
watchers and terminals.

Each socket, once authorized, takes a ``Ticket`` here: who it is (user, workspace), the
role it was opened with, and what to do when that role changes (``on_role``: the new role,
or None when the user is no longer a member). A node subscribes to ``access:{workspace}``
on the broker while it holds a ticket of that workspace.

A change (the members API: a role changed, a member removed or left; a workspace deleted)
calls ``announce``: this node re-checks its own tickets at once and publishes on
``access:{workspace}``; every other node re-checks its tickets of that user (of every user,
for a deleted workspace) when the message arrives. A re-check reads the roles from the
database, never from the message, so messages that cross or arrive late do no harm.

The bound: every open socket of that user, on every node, has acted on the change within
1 s of the API's answer while the broker is up (one publish plus one database read per
node; measured at 0.00-0.02 s on 2 nodes in tests/cluster/test_cluster_access.py, which
asserts the 1 s). A message lost to a broker outage is covered by the
fallback: every ``fallback_s`` each node reads the memberships' version (sql/0064) and, when
it moved (or every ``FULL_CHECK_S``), the roles of all its tickets in one query.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from broker.interface import Broker
from persistence.db import Database

log = logging.getLogger(__name__)

ACCESS_PREFIX = "access:"
DEFAULT_FALLBACK_S = 5.0

# The new role (None: no longer a member). May be a coroutine function.
RoleCallback = Callable[[str | None], Awaitable[None] | None]

SELECT_ROLES = """
select user_id, role from public.workspace_members
where workspace_id = $1 and user_id = any($2::uuid[])
"""
# Bumped by every change to memberships (sql/0064): the fallback reads the roles only when
# it moved, or every FULL_CHECK_S regardless.
SELECT_ROLES_VERSION = "select version from public.member_roles_version"
FULL_CHECK_S = 30.0
SELECT_ALL_ROLES = """
select m.workspace_id, m.user_id, m.role
from unnest($1::uuid[], $2::uuid[]) k(w, u)
join public.workspace_members m on m.workspace_id = k.w and m.user_id = k.u
"""


@dataclass(eq=False)
class Ticket:
    """One open socket as the membership path sees it."""

    user_id: uuid.UUID
    workspace_id: uuid.UUID
    kind: str  # document | project | chat | terminal (logs and counts)
    role: str | None
    on_role: RoleCallback
    # Tickets with the same key run their callback once per re-check (one hub-wide check
    # for all sockets of the kind instead of one per socket).
    once_key: object | None = None
    released: bool = field(default=False)


class Membership:
    def __init__(
        self, db: Database, broker: Broker, *, fallback_s: float = DEFAULT_FALLBACK_S
    ) -> None:
        self.db = db
        self.broker = broker
        self.fallback_s = fallback_s
        self._tickets: dict[uuid.UUID, set[Ticket]] = {}
        self._subscribed: set[uuid.UUID] = set()
        self._subscribe_lock = asyncio.Lock()
        self._fallback: asyncio.Task[None] | None = None
        self.rechecks = 0
        self._version_seen: int | None = None
        self._full_check_at = 0.0
        self.changes_applied = 0

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        self._fallback = asyncio.create_task(self._fallback_loop(), name="membership-fallback")

    async def stop(self) -> None:
        if self._fallback is not None:
            self._fallback.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._fallback
            self._fallback = None
        async with self._subscribe_lock:
            for workspace_id in list(self._subscribed):
                with contextlib.suppress(Exception):
                    await self.broker.unsubscribe(_channel(workspace_id), self._on_access)
            self._subscribed.clear()

    def health(self) -> dict[str, object]:
        kinds: dict[str, int] = {}
        for tickets in self._tickets.values():
            for ticket in tickets:
                kinds[ticket.kind] = kinds.get(ticket.kind, 0) + 1
        return {"sockets": kinds, "workspaces": len(self._subscribed),
                "rechecks": self.rechecks, "changes_applied": self.changes_applied}

    # -- sockets -----------------------------------------------------------------------

    async def track(
        self,
        user_id: uuid.UUID | str,
        workspace_id: uuid.UUID,
        kind: str,
        role: str | None,
        on_role: RoleCallback,
        *,
        once_key: object | None = None,
    ) -> Ticket:
        """Follow the role of one open socket until ``release``."""
        ticket = Ticket(_uuid(user_id), workspace_id, kind, role, on_role, once_key)
        self._tickets.setdefault(workspace_id, set()).add(ticket)
        if workspace_id not in self._subscribed:
            async with self._subscribe_lock:
                if workspace_id not in self._subscribed:
                    self._subscribed.add(workspace_id)
                    try:
                        await self.broker.subscribe(_channel(workspace_id), self._on_access)
                    except Exception as exc:  # the broker resubscribes; the fallback covers
                        log.warning("subscribing to membership changes of %s failed: %r",
                                    workspace_id, exc)
        return ticket

    def release(self, ticket: Ticket) -> None:
        """The socket is gone (synchronous: transports call it from their callbacks). The
        workspace's subscription ends at the next fallback pass if nothing else holds it."""
        ticket.released = True
        tickets = self._tickets.get(ticket.workspace_id)
        if tickets is not None:
            tickets.discard(ticket)
            if not tickets:
                del self._tickets[ticket.workspace_id]

    # -- changes -----------------------------------------------------------------------

    async def announce(self, workspace_id: uuid.UUID, user_id: uuid.UUID | None,
                       kind: str, role: str | None = None) -> None:
        """A membership changed (committed): re-check here, then tell every other node.

        ``user_id`` None: every member of the workspace (it was deleted). ``role`` is
        informational (receivers read the database)."""
        await self.recheck(workspace_id, user_id)
        event = {"type": kind, "workspace_id": str(workspace_id),
                 "user_id": str(user_id) if user_id else None, "role": role}
        await self.broker.publish(_channel(workspace_id), json.dumps(event).encode())

    async def _on_access(self, channel: str, payload: bytes) -> None:
        try:
            event = json.loads(payload)
            workspace_id = uuid.UUID(channel[len(ACCESS_PREFIX):])
            user = event.get("user_id")
            user_id = uuid.UUID(user) if user else None
        except (ValueError, TypeError, AttributeError):
            log.warning("malformed membership message on %s dropped", channel)
            return
        await self.recheck(workspace_id, user_id)

    async def recheck(self, workspace_id: uuid.UUID, user_id: uuid.UUID | None) -> None:
        """Read the current roles of this node's sockets of ``user_id`` (all users: None)
        in the workspace and act on those that changed."""
        tickets = [t for t in self._tickets.get(workspace_id, ())
                   if user_id is None or t.user_id == user_id]
        if not tickets:
            return
        self.rechecks += 1
        users = sorted({t.user_id for t in tickets}, key=str)
        async with self.db.acquire() as conn:
            rows = await conn.fetch(SELECT_ROLES, workspace_id, users)
        roles = {row["user_id"]: row["role"] for row in rows}
        await self._apply([(t, roles.get(t.user_id)) for t in tickets])

    async def recheck_all(self, *, force: bool = True) -> None:
        """Every ticket of this node, in one query (the fallback). Not ``force``: only when
        the memberships' version moved or the last full check is ``FULL_CHECK_S`` old."""
        if not self._tickets:
            return
        now = time.monotonic()
        async with self.db.acquire() as conn:
            version = await conn.fetchval(SELECT_ROLES_VERSION)
            if (not force and version is not None and version == self._version_seen
                    and now - self._full_check_at < FULL_CHECK_S):
                return
            # Read before the roles: a change committed meanwhile moves it again.
            self._version_seen, self._full_check_at = version, now
            # The pairs only now: a pass with nothing moved walks no tickets.
            pairs = sorted({(t.workspace_id, t.user_id) for ts in self._tickets.values()
                            for t in ts}, key=str)
            rows = await conn.fetch(SELECT_ALL_ROLES, [p[0] for p in pairs],
                                    [p[1] for p in pairs])
        roles = {(row["workspace_id"], row["user_id"]): row["role"] for row in rows}
        await self._apply([(t, roles.get((t.workspace_id, t.user_id)))
                           for ts in list(self._tickets.values()) for t in list(ts)])

    async def _apply(self, changes: list[tuple[Ticket, str | None]]) -> None:
        ran: set[object] = set()
        for ticket, role in changes:
            if ticket.released or role == ticket.role:
                continue
            ticket.role = role
            self.changes_applied += 1
            if ticket.once_key is not None:
                if ticket.once_key in ran:
                    continue
                ran.add(ticket.once_key)
            try:
                result = ticket.on_role(role)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("applying a role change to a %s socket failed", ticket.kind)

    async def _fallback_loop(self) -> None:
        while True:
            await asyncio.sleep(self.fallback_s)
            try:
                await self.recheck_all(force=False)
                await self._unsubscribe_idle()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("membership fallback check failed")

    async def _unsubscribe_idle(self) -> None:
        async with self._subscribe_lock:
            for workspace_id in list(self._subscribed):
                if workspace_id not in self._tickets:
                    self._subscribed.discard(workspace_id)
                    await self.broker.unsubscribe(_channel(workspace_id), self._on_access)


def _channel(workspace_id: uuid.UUID) -> str:
    return f"{ACCESS_PREFIX}{workspace_id}"


def _uuid(value: uuid.UUID | str) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(value)
