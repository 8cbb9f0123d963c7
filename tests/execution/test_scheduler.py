"""The run queue's policy: tenants take turns, caps per user and project, positions."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from execution.scheduler import NOT_QUEUED, FairScheduler, Ticket


class Queue:
    """A scheduler and the order in which it grants slots."""

    def __init__(self, **limits: int) -> None:
        self.scheduler = FairScheduler(**limits)
        self.tickets: dict[str, Ticket] = {}

    def add(self, name: str, owner: str, user: str | None = None,
            project: str | None = None) -> Ticket:
        ticket = self.scheduler.enqueue(
            uuid.uuid4(), owner=owner, user=user or owner, project=project or owner
        )
        self.tickets[name] = ticket
        return ticket

    def running(self) -> set[str]:
        return {n for n, t in self.tickets.items() if t.granted and not t.released}

    def positions(self) -> dict[str, int]:
        return {n: t.position for n, t in self.tickets.items()
                if not t.granted and not t.released}

    def finish(self, name: str) -> set[str]:
        """End a run; the runs that got a slot because of it."""
        before = self.running()
        self.scheduler.release(self.tickets[name])
        return self.running() - (before - {name})


def test_one_owner_and_caps_at_the_slots_is_a_fifo() -> None:
    queue = Queue(slots=2, per_user=2, per_project=2)
    for i in range(5):
        queue.add(f"r{i}", "everyone", user=f"u{i % 2}")
    assert queue.running() == {"r0", "r1"}
    assert queue.positions() == {"r2": 1, "r3": 2, "r4": 3}
    assert queue.finish("r1") == {"r2"}
    assert queue.finish("r0") == {"r3"}
    assert queue.positions() == {"r4": 1}


def test_a_newcomer_goes_before_a_flood() -> None:
    """One slot, a tenant with four runs: the next tenant's run is next, then a third
    tenant's, then the flood again; each tenant gets one turn in each round."""
    queue = Queue(slots=1, per_user=1, per_project=1)
    for i in range(4):
        queue.add(f"a{i}", "A", user=f"ua{i}", project=f"pa{i}")
    assert queue.running() == {"a0"}
    queue.add("b0", "B")
    queue.add("b1", "B", user="ub1", project="pb1")
    queue.add("c0", "C")
    assert queue.positions() == {"b0": 1, "c0": 2, "a1": 3, "b1": 4, "a2": 5, "a3": 6}
    order = [next(iter(queue.finish(name))) for name in ("a0", "b0", "c0", "a1", "b1")]
    assert order == ["b0", "c0", "a1", "b1", "a2"]


def test_per_user_and_per_project_caps_leave_slots_for_others() -> None:
    queue = Queue(slots=4, per_user=2, per_project=3)
    for i in range(4):
        queue.add(f"u{i}", "W", user="flooder", project="p")
    # Two slots stay free although the flooder has runs waiting.
    assert queue.running() == {"u0", "u1"}
    queue.add("teammate", "W", user="teammate", project="p")
    queue.add("teammate2", "W", user="teammate", project="p")
    # The project cap (3) holds the teammate's second run; another project's run starts.
    assert queue.running() == {"u0", "u1", "teammate"}
    queue.add("other", "W", user="teammate", project="q")
    assert queue.running() == {"u0", "u1", "teammate", "other"}
    assert queue.scheduler.stats().waiting == 3
    assert queue.finish("teammate") == {"teammate2"}


def test_leaving_the_queue_renumbers_the_rest() -> None:
    queue = Queue(slots=1, per_user=1, per_project=1)
    queue.add("a0", "A")
    queue.add("b0", "B")
    queue.add("c0", "C")
    assert queue.positions() == {"b0": 1, "c0": 2}
    queue.scheduler.release(queue.tickets["b0"])  # gave up waiting (cancelled)
    assert queue.positions() == {"c0": 1}
    assert queue.scheduler.waiting_of("B") == 0
    assert queue.finish("a0") == {"c0"}


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError):
        FairScheduler(slots=0, per_user=1, per_project=1)


async def test_a_waiting_run_is_woken_when_its_position_moves() -> None:
    queue = Queue(slots=1, per_user=1, per_project=1)
    queue.add("a0", "A")
    queue.add("a1", "A", user="x", project="y")
    waiter = queue.tickets["a1"]
    assert waiter.position == 1
    moved = asyncio.create_task(waiter.next_position())
    await asyncio.sleep(0)
    queue.add("b0", "B")  # a newcomer goes first: a1 moves back
    assert await asyncio.wait_for(moved, 1) == 2
    forward = asyncio.create_task(waiter.next_position())
    await asyncio.sleep(0)
    queue.finish("a0")  # b0 starts: a1 is next
    assert await asyncio.wait_for(forward, 1) == 1
    granted = asyncio.create_task(waiter.next_position())
    await asyncio.sleep(0)
    queue.finish("b0")
    assert await asyncio.wait_for(granted, 1) == NOT_QUEUED and waiter.granted
