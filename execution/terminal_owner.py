"""The owner side of terminals reachable from any node (execution/terminal_relay.py).

On the node running a terminal's PTY, each other node with clients of it is one client of
the terminal, a ``Proxy``: it counts for the size and keeps the shell from idling. Its
outbox is a ``BrokerOutbox``: the socket outbox's queue and writer (sockets.outbox), whose
writer publishes each frame on that node's channel instead of writing to a socket, so the
hub's byte bound, slow-consumer close and PTY pause/resume on drain apply to a relaying
node as to a socket. Attach requests are served here: the first one of a node attaches the
proxy (starting the shell when the requester may), every one gets its scrollback as a
``hello`` through the proxy's outbox, so it knows where its output starts.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from execution.shell import strip_queries
from execution.terminals import Client, Terminal, TerminalError, TerminalHub
from sockets.outbox import QueuedOutbox

log = logging.getLogger(__name__)

Key = tuple[uuid.UUID, str]
# (node, message) -> published on that node's channel.
Publish = Callable[[str, dict[str, Any]], Awaitable[None]]
HELLO = "relay.hello"


class BrokerOutbox(QueuedOutbox):
    """A relaying node's outbox: frames (and the close) published in order, by one writer.

    ``muted`` drops what the hub sends while attaching the proxy (setup and scrollback):
    each relayed socket gets its own through ``hello`` instead."""

    def __init__(self, key: Key, node: str, publish: Publish, limit: int,
                 on_closed: Callable[[], None]) -> None:
        self.muted = False
        self._key, self._node, self._publish, self._on_closed = key, node, publish, on_closed
        super().__init__(self._send_to_node, limit)

    def send_text(self, text: str) -> None:
        if not self.muted:
            super().send_text(text)

    def hello(self, client_id: str, replay: str) -> None:
        """Where one relayed client's output starts: its scrollback, after what was sent."""
        self._put({"type": HELLO, "text": replay, "c": client_id}, len(replay))

    async def _send_to_node(self, message: MutableMapping[str, Any]) -> None:
        body: dict[str, Any] = {"p": str(self._key[0]), "n": self._key[1]}
        kind = message["type"]
        if kind == "websocket.send":
            body.update(k="term", t=message["text"])
        elif kind == HELLO:
            body.update(k="hello", c=message["c"], r=message["text"])
        else:  # websocket.close: the terminal closed for this node
            body.update(k="closed", code=message["code"])
            self._on_closed()
        try:
            await self._publish(self._node, body)
        except Exception as exc:  # the broker reports and reconnects; output is lost
            log.warning("terminal %s output to node %s lost: %s", self._key, self._node, exc)


@dataclass(eq=False)
class Proxy:
    """One relaying node's clients of a local terminal, as one client of it."""

    terminal: Terminal
    client: Client
    outbox: BrokerOutbox
    node: str
    client_ids: set[str] = field(default_factory=set)


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
        # Outboxes whose close is still being published.
        self._closing: set[BrokerOutbox] = set()

    async def close(self) -> None:
        """Let the outboxes publish the terminals' close (the hub closed them), then stop."""
        outboxes = {p.outbox for p in self.proxies.values()} | self._closing
        await asyncio.gather(*(o.finish() for o in outboxes), return_exceptions=True)

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
                if proxy is None or proxy.terminal.closed or proxy.outbox.closed:
                    proxy = await self._new_proxy(key, node, message)
                elif proxy.outbox.behind:
                    raise TerminalError("busy", "the terminal is flooding; try again")
            except Exception as exc:
                if not isinstance(exc, TerminalError):
                    log.exception("attaching node %s to terminal %s failed", node, key)
                    exc = TerminalError("failed", "the terminal could not be started")
                await self.publish(node, {"k": "refused", "p": str(key[0]), "n": key[1],
                                          "c": client_id, "code": exc.code, "m": exc.message})
                return
            proxy.client_ids.add(client_id)
            # Through the proxy's outbox: whatever output was sent before it is in the
            # scrollback already, whatever comes after is new to this client.
            proxy.outbox.hello(client_id, strip_queries("".join(proxy.terminal.scrollback)))

    async def _new_proxy(self, key: Key, node: str, message: dict[str, Any]) -> Proxy:
        """Attach the relaying node as one client (starting the shell if it may)."""
        if self.hub.terminals.get(key) is None:
            self.claiming.add(key)
        outbox: BrokerOutbox | None = None

        def closed() -> None:  # the hub closed the node's outbox: the proxy is done
            proxy = self.proxies.get((key, node))
            if proxy is not None and proxy.outbox is outbox:
                del self.proxies[(key, node)]
                self._closing.add(outbox)
                outbox.writer.add_done_callback(lambda _t: self._closing.discard(outbox))

        outbox = BrokerOutbox(key, node, self.publish,
                              self.hub.config.terminal_send_buffer_bytes, closed)
        outbox.muted = True
        try:
            terminal, client = await self.hub.attach(
                key[0], key[1], uuid.UUID(message["u"]), bool(message["w"]), outbox
            )
        except BaseException:
            await outbox.finish()
            raise
        finally:
            outbox.muted = False
            self.claiming.discard(key)
        self.owned.add(key)
        client.can_write = True  # each relay checks its own sockets' roles
        proxy = Proxy(terminal, client, outbox, node)
        self.proxies[(key, node)] = proxy
        return proxy

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

    def drop(self, proxy: Proxy) -> None:
        """The node has no client left (or is gone): detach quietly, publishing nothing
        more (a close now could reach that node's next attach of the terminal)."""
        key = proxy.terminal.key
        if self.proxies.get((key, proxy.node)) is proxy:
            del self.proxies[(key, proxy.node)]
        lock = self._locks.get((key, proxy.node))
        if lock is not None and not lock.locked():
            del self._locks[(key, proxy.node)]
        if proxy.client in proxy.terminal.clients:
            self.hub.detach(proxy.terminal, proxy.client)
        proxy.outbox.writer.cancel()
