"""Awareness states of one room (cursors, selections, names), kept as the JSON text clients sent.

The server keeps the newest ``(clock, state)`` per client id so a newcomer receives every
known state, and it can announce a removal (``state = null`` with the next clock) for the
client ids a closed socket had used.

Who may write a client id's state (a client id is a random number a Yjs document picks):

- **Local sockets**: the first socket on this node to publish a live state for an id holds
  it; the id stays bound to that socket's user for the room's life here. A state for an id
  that another user's socket holds, or held, is dropped: nobody can show their content
  under someone else's cursor, push its clock out of reach, or remove it. Another socket of
  the same user may take an id over (a client reconnecting before its old socket is seen
  closed keeps its id).
- **Other nodes** (the broker): an id another node sent a live state for within
  ``REMOTE_HOLD_S`` belongs to that node; local sockets cannot claim it until the node
  announces its removal or stops renewing it (clients renew every 15 s; 30 s is
  y-protocols' own timeout). A broker state for an id a local socket holds is dropped: the
  holding node's word wins, on each node. Limits: two nodes that have never seen an id
  (a room just loaded on one of them) can each let a local socket claim it, and each then
  serves its own claimant's state; and the clients of a killed node, reconnecting through
  another one, get their cursors shown there again at most ``REMOTE_HOLD_S`` after their
  last renewal (a clean shutdown announces the removals, so no wait).
- **Invalid states** (not JSON, or JSON that is not an object or null) are dropped.

Renewals, batched: a stock client re-sends its unchanged state every 15 s (with the next
clock) so that its peers, which drop a state not renewed for 30 s, keep showing it. Relayed
one by one, each renewal costs a send to every other peer and an echo back from each. A
renewal (same JSON text as the held live state) is held in ``pending`` instead and the hub
sends a room's pending renewals together, one frame to every peer, at most
``CollabConfig.awareness_renewal_delay_s`` later (collab/hub.py). The sender gets its own
renewal back, as from @y/websocket-server: a stock client closes a socket that received no
message for 30 s, and a client alone in a room receives nothing else. A change (new
state, removal) goes out at once and supersedes that client's pending renewal.

Dropped entries are counted (``icreate_doc_awareness_dropped_total``); the rest of a frame
is still relayed. Stale entries (a clock the room already holds: the echoes stock clients
send of every state they receive) are ignored silently.

Echoes, cheaply: a stock client re-encodes what it received byte for byte (same ids, clocks
and JSON text), so most echoes are the very bytes of a frame the room relayed or sent a
newcomer. The room remembers its last ``RECENT_FRAMES`` such frames (``recent``); the hub
drops a frame found there without parsing it. That is exactly what the full path would
do: a remembered frame holds only entries the room accepted, a room's entries only move
forward (a newer clock, or a removal at the next clock), so every entry of those bytes is
stale from then on, and stale entries change nothing (no claim, no remote hold).
"""

from __future__ import annotations

import json
import time
from typing import Protocol

from collab.metrics import AWARENESS_DROPPED
from collab.protocol import AwarenessEntry, awareness_frame, encode_awareness

REMOTE_HOLD_S = 30.0
# Echoes come back within a round trip of the frame they repeat: a few frames suffice.
RECENT_FRAMES = 8


class Claimant(Protocol):
    """A local socket, as far as awareness goes: its user and the ids it holds."""

    user_id: str
    awareness_ids: set[int]


def checked(entry: AwarenessEntry) -> AwarenessEntry | None:
    """The entry if its state is JSON text of an object or null (what y-protocols'
    ``JSON.parse`` expects), with any spelling of null as ``"null"``; else None."""
    state = entry.state
    if state == "null":
        return entry
    try:
        value = json.loads(state)
    except ValueError:
        return None
    if isinstance(value, dict):
        return entry
    return AwarenessEntry(entry.client_id, entry.clock, "null") if value is None else None


def _stale(entry: AwarenessEntry, known: AwarenessEntry | None) -> bool:
    """y-protocols' rule: a newer clock wins; an equal clock may only remove a live state."""
    if known is None or entry.clock > known.clock:
        return False
    return entry.clock < known.clock or not (entry.removed and not known.removed)


class AwarenessStates:
    def __init__(self) -> None:
        self._entries: dict[int, AwarenessEntry] = {}
        self._holders: dict[int, Claimant] = {}  # id -> the local socket holding it now
        self._users: dict[int, str] = {}  # id -> the user whose local socket introduced it
        self._remote: dict[int, float] = {}  # id -> when another node last sent it live
        self.recent: dict[bytes, None] = {}  # frames this room sent out, oldest first
        self.pending: dict[int, AwarenessEntry] = {}  # renewals not sent yet, by client id

    def remember(self, frame: bytes) -> None:
        """``frame`` (entries this room accepted) went out: its echoes are stale."""
        recent = self.recent
        recent[frame] = None
        if len(recent) > RECENT_FRAMES:
            del recent[next(iter(recent))]

    def __len__(self) -> int:
        return sum(1 for entry in self._entries.values() if not entry.removed)

    def apply_local(
        self, entries: list[AwarenessEntry], claimant: Claimant, now: float | None = None
    ) -> list[AwarenessEntry]:
        """Record a local socket's newer entries that it may write; return those accepted.

        ``claimant.awareness_ids`` gains the ids the socket now holds and loses those it
        removed (or another socket of its user took over): closing the socket removes
        exactly those, not the states it merely echoed.
        """
        return self.apply_local_split(entries, claimant, now)[0]

    def apply_local_split(
        self, entries: list[AwarenessEntry], claimant: Claimant, now: float | None = None
    ) -> tuple[list[AwarenessEntry], int]:
        """``apply_local``, and how many of the accepted entries are renewals (the same
        live state as held, a newer clock)."""
        accepted: list[AwarenessEntry] = []
        renewals = 0
        for entry in entries:
            client_id = entry.client_id
            known = self._entries.get(client_id)
            if _stale(entry, known):
                continue
            # A renewal repeats the state it renews: checked once, not every 15 s.
            renewal = known is not None and entry.state == known.state
            valid = entry if renewal else checked(entry)
            if valid is None:
                AWARENESS_DROPPED.labels("invalid_state").inc()
                continue
            if not self._may_write(client_id, claimant, now):
                AWARENESS_DROPPED.labels("foreign_id").inc()
                continue
            if renewal and not entry.removed:
                renewals += 1
            entry = valid
            holder = self._holders.get(client_id)
            if entry.removed:
                claimant.awareness_ids.discard(client_id)
                self._holders.pop(client_id, None)
            else:
                if holder is not None and holder is not claimant:
                    holder.awareness_ids.discard(client_id)
                claimant.awareness_ids.add(client_id)
                self._holders[client_id] = claimant
                self._users[client_id] = claimant.user_id
            self._entries[client_id] = entry
            accepted.append(entry)
        return accepted, renewals

    def defer(self, renewals: list[AwarenessEntry]) -> bool:
        """Hold renewals for the next batch; True when the room had none pending."""
        pending = self.pending
        first = not pending
        for entry in renewals:
            pending[entry.client_id] = entry
        return first

    def supersede(self, entries: list[AwarenessEntry]) -> None:
        """These entries go out now: a pending renewal of the same ids is older."""
        pending = self.pending
        if pending:
            for entry in entries:
                pending.pop(entry.client_id, None)

    def take_pending(self) -> bytes | None:
        """The frame of the pending renewals (and none pending after), or None."""
        if not self.pending:
            return None
        entries = list(self.pending.values())
        self.pending = {}
        return awareness_frame(encode_awareness(entries))

    def _may_write(self, client_id: int, claimant: Claimant, now: float | None) -> bool:
        holder = self._holders.get(client_id)
        if holder is not None:
            return holder is claimant or holder.user_id == claimant.user_id
        user = self._users.get(client_id)
        if user is not None and user != claimant.user_id:
            return False
        seen = self._remote.get(client_id)
        if seen is None:
            return True
        return (time.monotonic() if now is None else now) - seen >= REMOTE_HOLD_S

    def apply_remote(
        self, entries: list[AwarenessEntry], now: float | None = None
    ) -> list[AwarenessEntry]:
        """Record another node's newer entries, except for ids a local socket holds."""
        accepted: list[AwarenessEntry] = []
        for entry in entries:
            client_id = entry.client_id
            known = self._entries.get(client_id)
            if _stale(entry, known):
                continue
            valid = entry if known is not None and entry.state == known.state else checked(entry)
            if valid is None:
                AWARENESS_DROPPED.labels("invalid_state").inc()
                continue
            if client_id in self._holders:
                AWARENESS_DROPPED.labels("foreign_id").inc()
                continue
            entry = valid
            if entry.removed:
                self._remote.pop(client_id, None)
            else:
                self._remote[client_id] = time.monotonic() if now is None else now
            self._entries[client_id] = entry
            accepted.append(entry)
        return accepted

    def remove(self, client_ids: set[int]) -> bytes | None:
        """Mark clients gone; the awareness frame announcing it (None when nothing to say)."""
        removals: list[AwarenessEntry] = []
        for client_id in client_ids:
            self._holders.pop(client_id, None)
            self.pending.pop(client_id, None)
            known = self._entries.get(client_id)
            if known is None or known.removed:
                continue
            entry = AwarenessEntry(client_id, known.clock + 1, "null")
            self._entries[client_id] = entry
            removals.append(entry)
        if not removals:
            return None
        return awareness_frame(encode_awareness(removals))

    def snapshot_frame(self) -> bytes | None:
        """One awareness frame with every live state, or None when there is none."""
        live = [entry for entry in self._entries.values() if not entry.removed]
        if not live:
            return None
        return awareness_frame(encode_awareness(live))


def awareness_relay(
    raw: bytes, entries: list[AwarenessEntry], accepted: list[AwarenessEntry]
) -> bytes | None:
    """What to pass on of an awareness frame: all of it, its new entries only, or nothing."""
    if not accepted:
        return None
    if len(accepted) == len(entries):
        return raw
    return awareness_frame(encode_awareness(accepted))
