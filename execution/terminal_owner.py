"""The owner side of terminals reachable from any node (execution/terminal_relay.py).

On the node running a terminal's PTY, each other node with clients of it is one client of
the terminal, a ``Proxy``: it counts for the size and keeps the shell from idling, and its
queue (the terminal's output for that node, in order) is pumped onto the broker. Attach
requests are served here: the first one of a node attaches the proxy (starting the shell
when the requester may), every one gets its scrollback as a ``hello`` through the proxy's
queue so it knows where its output starts.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from execution.shell import strip_queries
from execution.terminals import Client, Message, Terminal, TerminalError, TerminalHub

log = logging.getLogger(__name__)

Key = tuple[uuid.UUID, str]
# (node, message) -> published on that node's channel.
Publish = Callable[[str, dict[str, Any]], Awaitable[None]]


@dataclass(eq=False)
class Proxy:
    """One relaying node's clients of a local terminal, as one client of it."""

    terminal: Terminal
    client: Client
    node: str
    client_ids: set[str] = field(default_factory=set)
    pump: asyncio.Task[None] | None = None


class TerminalHost:
    def __init__(
        self, hub: TerminalHub, publish: Publish, claiming: set[Key], owned: set[Key]
    ) -> None:
        self.hub = hub
        self.publish = publish
        # The router's: terminals being started here / holding a row of this node.
        self.claiming = claiming
        self.owned = owned
        self.proxies: dict[tuple[Key, str], Proxy] = {}
        self._locks: dict[tuple[Key, str], asyncio.Lock] = {}

    async def close(self, timeout_s: float) -> None:
        """Let the pumps publish the terminals' close (the hub closed them), then stop."""
        pumps = [p.pump for p in self.proxies.values() if p.pump is not None]
        if pumps:
            _done, slow = await asyncio.wait(pumps, timeout=timeout_s)
            for pump in slow:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)

    def drop_nodes(self, dead: Callable[[str], bool]) -> list[Proxy]:
        """Drop the proxies of nodes no longer heard from; returns them."""
        gone = [p for p in self.proxies.values() if dead(p.node)]
        for proxy in gone:
            self.drop(proxy)
        return gone

    async def serve_attach(self, key: Key, node: str, message: dict[str, Any]) -> None:
        client_id = str(message["c"])
        async with self._locks.setdefault((key, node), asyncio.Lock()):
            proxy = self.proxies.get((key, node))
            try:
                if proxy is None or proxy.terminal.closed:
                    proxy, replay = await self._new_proxy(key, node, message)
                elif proxy.client.queue.full():
                    raise TerminalError("busy", "the terminal is flooding; try again")
                else:
                    replay = strip_queries("".join(proxy.terminal.scrollback))
            except Exception as exc:
                if not isinstance(exc, TerminalError):
                    log.exception("attaching node %s to terminal %s failed", node, key)
                    exc = TerminalError("failed", "the terminal could not be started")
                await self.publish(node, {"k": "refused", "p": str(key[0]), "n": key[1],
                                          "c": client_id, "code": exc.code, "m": exc.message})
                return
            proxy.client_ids.add(client_id)
            # Through the proxy's queue: whatever output is queued before it is in the
            # scrollback already, whatever comes after is new to this client.
            proxy.client.queue.put_nowait(["hello", client_id, replay])
            if proxy.pump is None:
                proxy.pump = asyncio.create_task(self._pump(key, proxy),
                                                 name=f"terminal-pump-{node}")

    async def _new_proxy(
        self, key: Key, node: str, message: dict[str, Any]
    ) -> tuple[Proxy, str]:
        """Attach the relaying node as one client (starting the shell if it may)."""
        if self.hub.terminals.get(key) is None:
            self.claiming.add(key)
        try:
            terminal, client, replay = await self.hub.attach(
                key[0], key[1], uuid.UUID(message["u"]), bool(message["w"])
            )
        finally:
            self.claiming.discard(key)
        self.owned.add(key)
        client.can_write = True  # each relay checks its own sockets' roles
        proxy = Proxy(terminal, client, node)
        self.proxies[(key, node)] = proxy
        return proxy, replay

    def relayed_input(self, proxy: Proxy | None, kind: str, message: dict[str, Any]) -> None:
        if proxy is None:
            return
        try:
            if kind == "in":
                proxy.client.user_id = uuid.UUID(message["u"])  # the typist, for the record
                self.hub.write(proxy.terminal, proxy.client, str(message["t"]))
            elif kind == "size":
                self.hub.resize(proxy.terminal, proxy.client, int(message["r"]),
                                int(message["c"]))
            elif kind == "detach":
                proxy.client_ids.discard(str(message["c"]))
                if not proxy.client_ids:
                    self.drop(proxy)
        except (KeyError, TypeError, ValueError):
            log.warning("malformed terminal %s message dropped", kind)

    async def _pump(self, key: Key, proxy: Proxy) -> None:
        """The proxy's queue onto the broker, in order, until the terminal closes for it."""
        while True:
            item: Message = await proxy.client.queue.get()
            try:
                await self.publish(proxy.node, {
                    "k": "term", "p": str(key[0]), "n": key[1], "m": item,
                    "code": proxy.client.closed_code,
                })
            except Exception as exc:  # the broker reports and reconnects; output is lost
                log.warning("terminal %s output to node %s lost: %s", key, proxy.node, exc)
            if item is None:
                if self.proxies.get((key, proxy.node)) is proxy:
                    del self.proxies[(key, proxy.node)]
                return
            if not proxy.terminal.reading:
                self.hub.client_drained(proxy.terminal)

    def drop(self, proxy: Proxy) -> None:
        key = proxy.terminal.key
        if self.proxies.get((key, proxy.node)) is proxy:
            del self.proxies[(key, proxy.node)]
        lock = self._locks.get((key, proxy.node))
        if lock is not None and not lock.locked():
            del self._locks[(key, proxy.node)]
        if proxy.pump is not None:
            proxy.pump.cancel()
        if proxy.client in proxy.terminal.clients:
            self.hub.detach(proxy.terminal, proxy.client)
