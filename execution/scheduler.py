"""Which waiting run gets the next sandbox slot: fair between tenants, capped per user and
per project. One scheduler per process (each node schedules the runs it accepted).

Policy:
- at most ``slots`` runs at once (the machine's budget), at most ``per_user`` of one user
  and ``per_project`` of one project, so one member flooding cannot take every slot;
- waiting runs are grouped by owner (the project's workspace: the tenant). Owners take
  turns, least recently served first (an owner that has not been served while it had runs
  here goes before all that have; ties by arrival): a slot goes to the first owner in that
  order with a run its caps allow (its oldest such run). A newcomer's one-line print waits
  for the next free slot, not for a whole flood;
- with ``per_user = per_project = slots`` and a single owner this is the old global FIFO
  (the benchmark compares both in one run).

Queue position (1-based) is the order in which waiting runs would start if slots freed one
at a time and no cap held anyone back: round-robin over the owners in the order above. It
is an estimate when caps bind, exact otherwise. ``Ticket.changed`` wakes a
waiting run whenever its position moves, so it can tell its watchers.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter, deque
from collections.abc import Hashable
from dataclasses import dataclass, field

NOT_QUEUED = 0  # holds a slot (or never waited)


@dataclass(eq=False)
class Ticket:
    run_id: uuid.UUID
    owner: Hashable  # the tenant whose runs take turns with other tenants' runs
    user: Hashable
    project: Hashable
    granted: bool = False
    released: bool = False
    position: int = NOT_QUEUED
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def next_position(self) -> int:
        """Wait until the position moves or the slot is granted; the new position
        (``NOT_QUEUED`` once granted)."""
        seen = self.position
        while not self.granted and self.position == seen:
            self.changed.clear()
            await self.changed.wait()
        return NOT_QUEUED if self.granted else self.position


@dataclass
class SchedulerStats:
    running: int
    waiting: int
    owners_waiting: int


class FairScheduler:
    def __init__(self, *, slots: int, per_user: int, per_project: int) -> None:
        if min(slots, per_user, per_project) < 1:
            raise ValueError("every run limit must be at least 1")
        self.slots = slots
        self.per_user = per_user
        self.per_project = per_project
        # Owners with waiting runs (in order of arrival) and when each was last served; an
        # owner is forgotten once it has nothing running or waiting.
        self._waiting: dict[Hashable, deque[Ticket]] = {}
        self._served: dict[Hashable, int] = {}
        self._serial = 0
        self._running = 0
        self._by_owner: Counter[Hashable] = Counter()
        self._by_user: Counter[Hashable] = Counter()
        self._by_project: Counter[Hashable] = Counter()
        self._waiting_by_user: Counter[Hashable] = Counter()

    def waiting_of(self, user: Hashable) -> int:
        return self._waiting_by_user[user]

    def stats(self) -> SchedulerStats:
        return SchedulerStats(
            running=self._running,
            waiting=sum(len(q) for q in self._waiting.values()),
            owners_waiting=len(self._waiting),
        )

    def enqueue(self, run_id: uuid.UUID, *, owner: Hashable, user: Hashable,
                project: Hashable) -> Ticket:
        """Queue a run; it may be granted a slot at once (``ticket.granted``)."""
        ticket = Ticket(run_id, owner, user, project)
        self._waiting.setdefault(owner, deque()).append(ticket)
        self._waiting_by_user[user] += 1
        self._dispatch()
        return ticket

    def release(self, ticket: Ticket) -> None:
        """The run ended (or gave up waiting): free its slot or its place in line."""
        if ticket.released:
            return
        ticket.released = True
        if ticket.granted:
            self._running -= 1
            self._by_user[ticket.user] -= 1
            self._by_project[ticket.project] -= 1
            self._by_owner[ticket.owner] -= 1
        else:
            queue = self._waiting.get(ticket.owner)
            if queue is not None and ticket in queue:
                queue.remove(ticket)
                self._waiting_by_user[ticket.user] -= 1
                if not queue:
                    del self._waiting[ticket.owner]
        self._forget(ticket.owner)
        self._dispatch()

    def _forget(self, owner: Hashable) -> None:
        if self._by_owner[owner] <= 0 and owner not in self._waiting:
            self._served.pop(owner, None)
            del self._by_owner[owner]

    def _allowed(self, ticket: Ticket) -> bool:
        return (self._by_user[ticket.user] < self.per_user
                and self._by_project[ticket.project] < self.per_project)

    def _turns(self) -> list[Hashable]:
        """Owners with waiting runs, least recently served first (dicts keep arrival order
        and ``sorted`` is stable)."""
        return sorted(self._waiting, key=lambda owner: self._served.get(owner, -1))

    def _dispatch(self) -> None:
        while self._running < self.slots:
            chosen = self._next()
            if chosen is None:
                break
            queue = self._waiting[chosen.owner]
            queue.remove(chosen)
            self._waiting_by_user[chosen.user] -= 1
            if not queue:
                del self._waiting[chosen.owner]
            self._serial += 1
            self._served[chosen.owner] = self._serial
            self._running += 1
            self._by_user[chosen.user] += 1
            self._by_project[chosen.project] += 1
            self._by_owner[chosen.owner] += 1
            chosen.granted = True
            chosen.position = NOT_QUEUED
            chosen.changed.set()
        self._renumber()

    def _next(self) -> Ticket | None:
        for owner in self._turns():
            for ticket in self._waiting[owner]:
                if self._allowed(ticket):
                    return ticket
        return None

    def _renumber(self) -> None:
        queues = [list(self._waiting[owner]) for owner in self._turns()]
        position = 0
        for depth in range(max((len(q) for q in queues), default=0)):
            for queue in queues:
                if depth < len(queue):
                    position += 1
                    ticket = queue[depth]
                    if ticket.position != position:
                        ticket.position = position
                        ticket.changed.set()
