"""Awareness states of one room (cursors, selections, names), kept as the JSON text clients sent.

The server never interprets the JSON: it keeps the newest ``(clock, state)`` per client id
so a newcomer receives every known state, and it can announce a removal (``state = null``
with the next clock) for the client ids a closed socket had used.
"""

from __future__ import annotations

from collab.protocol import AwarenessEntry, awareness_frame, encode_awareness


class AwarenessStates:
    def __init__(self) -> None:
        self._entries: dict[int, AwarenessEntry] = {}

    def __len__(self) -> int:
        return sum(1 for entry in self._entries.values() if not entry.removed)

    def apply(
        self, entries: list[AwarenessEntry], controlled: set[int] | None = None
    ) -> list[AwarenessEntry]:
        """Record newer entries; return those that changed something.

        An entry whose clock the room already holds is stale: stock y-websocket clients send
        every awareness update they receive back to the server, so most of what arrives is
        such an echo, and relaying it would cost a round of sends per peer. ``controlled``
        (the sending socket's ids) gains the client ids this socket introduced (unknown to
        the room, or removed) and loses those it removed, as @y/websocket-server keeps them:
        closing the socket removes exactly those, not the states it merely echoed.
        """
        accepted: list[AwarenessEntry] = []
        for entry in entries:
            known = self._entries.get(entry.client_id)
            if known is not None:
                # Same rule as y-protocols: a newer clock wins; an equal clock may remove.
                if entry.clock < known.clock:
                    continue
                if entry.clock == known.clock and not (entry.removed and not known.removed):
                    continue
            if controlled is not None:
                if entry.removed:
                    controlled.discard(entry.client_id)
                elif known is None or known.removed:
                    controlled.add(entry.client_id)
            self._entries[entry.client_id] = entry
            accepted.append(entry)
        return accepted

    def remove(self, client_ids: set[int]) -> bytes | None:
        """Mark clients gone; the awareness frame announcing it (None when nothing to say)."""
        removals: list[AwarenessEntry] = []
        for client_id in client_ids:
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
