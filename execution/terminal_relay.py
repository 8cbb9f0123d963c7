"""Terminals reachable from any node: one PTY per terminal, on its owner node; sockets on
other nodes reach it over the broker, so any load balancer (round-robin included) works.

Ownership: ``terminal_owners`` (sql/0210) names the node running each terminal, under a
lease the owner renews every ``beat_s``. A socket that may start the terminal claims the
row (free, its own, or its lease ran out) and gets the owner back; a viewer only reads it.

Between nodes (broker messages, JSON; each node listens on ``terminal-node:{node}``):
  relay -> owner  ``attach`` (client id, user, may type) | ``in`` (typed text) | ``size``
                  (the smallest of that node's clients) | ``detach`` (client id)
  owner -> relay  in order: ``hello`` (a client's scrollback; its output starts after
                  it) | ``term`` (one encoded socket frame: stdout, disconnect) |
                  ``closed`` (the terminal closed for that node, with the close code)
                  | ``refused`` (an attach)
On the owner a relaying node is one client of the terminal, whose outbox publishes
(``execution.terminal_owner``); on the relay each frame is written as it came to each
local socket's outbox (a socket behind is closed with 1013, like locally).

Death: every node beats on ``terminal-nodes`` every ``beat_s``. A relay that has not heard
the owner for ``lease_s`` closes that terminal's sockets with 4410 (the shell died with its
node; the next attach starts a new one once the lease ran out); an owner that has not heard
a relay for ``lease_s`` drops that node's proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from broker.interface import Broker
from execution.config import ExecutionConfig
from execution.terminal_owner import TerminalHost
from execution.terminals import Client, Terminal, TerminalError, TerminalHub
from persistence import terminal_owners as owners
from persistence.db import Database
from sockets.close_codes import GOING_AWAY, SLOW_CONSUMER, TERMINAL_GONE
from sockets.outbox import Outbox

log = logging.getLogger(__name__)

NODES_CHANNEL = "terminal-nodes"
# A node not heard from for this many leases is forgotten (its terminals were closed).
FORGET_NODE_AFTER = 20
Key = tuple[uuid.UUID, str]


def node_channel(node: str) -> str:
    return f"terminal-node:{node}"


@dataclass(eq=False)
class RemoteTerminal:
    """A terminal whose PTY runs on another node, as this node's sockets see it."""

    key: Key
    owner: str
    ids: dict[Client, str] = field(default_factory=dict)
    ready: set[Client] = field(default_factory=set)
    hellos: dict[str, asyncio.Future[None]] = field(default_factory=dict)
    closed: bool = False
    size: tuple[int, int] | None = None

    def client(self, client_id: str) -> Client | None:
        return next((c for c, i in self.ids.items() if i == client_id), None)


AnyTerminal = Terminal | RemoteTerminal


class TerminalRouter:
    """What terminal sockets call: the local hub for terminals run here, else a relay."""

    def __init__(
        self, hub: TerminalHub, db: Database, broker: Broker, *,
        beat_s: float = 1.0, lease_s: float = 3.0, attach_timeout_s: float = 10.0,
    ) -> None:
        self.hub = hub
        self.db = db
        self.broker = broker
        self.node = broker.instance_id
        self.beat_s = beat_s
        self.lease_s = lease_s
        self.attach_timeout_s = attach_timeout_s
        self.remote: dict[Key, RemoteTerminal] = {}
        self.heard: dict[str, float] = {}
        self._claiming: set[Key] = set()
        # Terminals this node holds a row for (released when their shell is gone).
        self._owned: set[Key] = set()
        self.host = TerminalHost(hub, self._publish, self._claiming, self._owned)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._beat: asyncio.Task[None] | None = None
        self.owners_gone = 0

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        await self.broker.subscribe(node_channel(self.node), self._on_node_message)
        await self.broker.subscribe(NODES_CHANNEL, self._on_beat)
        self._beat = asyncio.create_task(self._beat_loop(), name="terminal-router-beat")

    async def close(self) -> None:
        """After the hub closed its terminals (proxies got their close): tell relays' sockets
        and owners, then drop this node's ownership rows."""
        if self._beat is not None:
            self._beat.cancel()
            await asyncio.gather(self._beat, return_exceptions=True)
        await self.host.close()
        for remote in list(self.remote.values()):
            for client in list(remote.ids):
                self._detach_remote(remote, client)
                client.outbox.close(GOING_AWAY, "server shutting down")
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        with contextlib.suppress(Exception):
            async with self.db.acquire() as conn:
                await owners.release_node(conn, self.node)
        for channel, handler in ((node_channel(self.node), self._on_node_message),
                                 (NODES_CHANNEL, self._on_beat)):
            with contextlib.suppress(Exception):
                await self.broker.unsubscribe(channel, handler)

    @property
    def config(self) -> ExecutionConfig:
        return self.hub.config

    def health(self) -> dict[str, Any]:
        return {"node": self.node, "relayed_terminals": len(self.remote),
                "relayed_clients": sum(len(r.ids) for r in self.remote.values()),
                "proxies": len(self.host.proxies), "owners_gone": self.owners_gone}

    # -- what sockets call ---------------------------------------------------------------

    async def attach(
        self, project_id: uuid.UUID, name: str, user_id: uuid.UUID, can_write: bool,
        outbox: Outbox,
    ) -> tuple[AnyTerminal, Client]:
        """Join (or start) the terminal with an accepted socket's ``outbox``: it gets
        ``["setup", {}]`` and the scrollback first, wherever the shell runs."""
        key = (project_id, name)
        local = self.hub.terminals.get(key)
        if local is not None and not local.closed:
            return await self.hub.attach(project_id, name, user_id, can_write, outbox)
        if can_write:
            self._claiming.add(key)  # before the claim: the lease renewal keeps its row
        try:
            async with self.db.acquire() as conn:
                if can_write:
                    owner = await owners.claim(conn, project_id, name, self.node, self.lease_s)
                else:
                    owner = await owners.live_owner(conn, project_id, name)
            if owner is None or owner == self.node:
                attached = await self.hub.attach(project_id, name, user_id, can_write, outbox)
                self._owned.add(key)
                return attached
        finally:
            self._claiming.discard(key)
        return await self._attach_remote(key, owner, user_id, can_write, outbox)

    def write(self, terminal: AnyTerminal, client: Client, text: str) -> None:
        if isinstance(terminal, Terminal):
            self.hub.write(terminal, client, text)
        elif client.can_write and not terminal.closed and client in terminal.ready:
            self._to_owner(terminal, "in", u=str(client.user_id), t=text)

    def resize(self, terminal: AnyTerminal, client: Client, rows: int, cols: int) -> None:
        if isinstance(terminal, Terminal):
            self.hub.resize(terminal, client, rows, cols)
            return
        client.size = (max(2, min(rows, 1000)), max(2, min(cols, 1000)))
        self._send_size(terminal)

    def _send_size(self, remote: RemoteTerminal) -> None:
        """This node's clients count as one for the owner: the smallest of their sizes."""
        sizes = [c.size for c in remote.ids if c.size is not None]
        if not sizes or remote.closed:
            return
        size = (min(s[0] for s in sizes), min(s[1] for s in sizes))
        if size != remote.size:
            remote.size = size
            self._to_owner(remote, "size", r=size[0], c=size[1])

    def detach(self, terminal: AnyTerminal, client: Client) -> None:
        if isinstance(terminal, Terminal):
            if client in terminal.clients:
                self.hub.detach(terminal, client)
        else:
            self._detach_remote(terminal, client)

    def disconnect(self, terminal: AnyTerminal, client: Client, code: int) -> None:
        """Stop this client now (its access was revoked): no more input, its socket closes."""
        client.can_write = False
        self.detach(terminal, client)
        client.outbox.close(code, "access revoked")

    # -- the relay side ----------------------------------------------------------------

    async def _attach_remote(
        self, key: Key, owner: str, user_id: uuid.UUID, can_write: bool, outbox: Outbox
    ) -> tuple[RemoteTerminal, Client]:
        remote = self.remote.get(key)
        if remote is None or remote.closed or remote.owner != owner:
            remote = RemoteTerminal(key, owner)
            self.remote[key] = remote
        self.heard.setdefault(owner, time.monotonic())
        client = Client(user_id, can_write, outbox)
        client_id = uuid.uuid4().hex
        hello: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        remote.ids[client] = client_id
        remote.hellos[client_id] = hello
        self._to_owner(remote, "attach", c=client_id, u=str(user_id), w=can_write)
        try:
            await asyncio.wait_for(hello, self.attach_timeout_s)
        except TimeoutError:
            self._forget(remote, client, client_id)
            raise TerminalError("owner_unreachable",
                                "the node running this terminal did not answer") from None
        except BaseException:  # refused (TerminalError) or cancelled
            self._forget(remote, client, client_id)
            raise
        self.heard[owner] = time.monotonic()
        return remote, client

    def _forget(self, remote: RemoteTerminal, client: Client, client_id: str) -> None:
        remote.hellos.pop(client_id, None)
        self._detach_remote(remote, client)

    def _detach_remote(self, remote: RemoteTerminal, client: Client) -> None:
        client_id = remote.ids.pop(client, None)
        remote.ready.discard(client)
        if client_id is not None and not remote.closed:
            self._to_owner(remote, "detach", c=client_id)
            self._send_size(remote)
        if not remote.ids and self.remote.get(remote.key) is remote:
            del self.remote[remote.key]

    def _to_owner(self, remote: RemoteTerminal, kind: str, **body: Any) -> None:
        message = {"k": kind, "p": str(remote.key[0]), "n": remote.key[1], "from": self.node,
                   **body}
        self.broker.publish_nowait(node_channel(remote.owner), json.dumps(message).encode())

    def _greet(self, remote: RemoteTerminal, client_id: str, replay: str) -> None:
        """The owner's answer to one attach: that socket's setup and scrollback, written
        here, before any output that follows the hello on the channel."""
        hello = remote.hellos.pop(client_id, None)
        greeted = remote.client(client_id)
        if hello is None or hello.done() or greeted is None:
            return
        greeted.outbox.send_text(json.dumps(["setup", {}]))
        if replay:
            greeted.outbox.send_text(json.dumps(["stdout", replay]))
        remote.ready.add(greeted)
        hello.set_result(None)

    def _relay_frame(self, remote: RemoteTerminal, text: str) -> None:
        """One frame of the terminal, encoded by the owner, to every greeted socket here."""
        for client in list(remote.ready):
            if client.behind:  # this socket falls behind: it reconnects for scrollback
                self._detach_remote(remote, client)
                client.outbox.close(SLOW_CONSUMER, "too slow to keep up")
            else:
                client.outbox.send_text(text)

    def _terminal_closed(self, remote: RemoteTerminal, code: int) -> None:
        remote.closed = True
        for hello in remote.hellos.values():
            if not hello.done():
                hello.set_exception(TerminalError("not_running", "this terminal closed"))
        remote.hellos.clear()
        for client in list(remote.ids):
            client.outbox.close(code, "terminal closed")
        remote.ids.clear()
        remote.ready.clear()
        if self.remote.get(remote.key) is remote:
            del self.remote[remote.key]

    # -- the owner side ----------------------------------------------------------------

    async def _on_node_message(self, _channel: str, payload: bytes) -> None:
        try:
            message = json.loads(payload)
            kind, node = str(message["k"]), str(message["from"])
            key: Key = (uuid.UUID(message["p"]), str(message["n"]))
        except (ValueError, KeyError, TypeError):
            log.warning("malformed terminal message dropped")
            return
        self.heard[node] = time.monotonic()
        try:
            self._dispatch(kind, node, key, message)
        except (ValueError, KeyError, TypeError):
            log.warning("malformed terminal %s message dropped", kind)

    def _dispatch(self, kind: str, node: str, key: Key, message: dict[str, Any]) -> None:
        if kind in ("term", "hello", "closed"):
            remote = self.remote.get(key)
            if remote is None or remote.owner != node:
                return
            if kind == "term":
                self._relay_frame(remote, str(message["t"]))
            elif kind == "hello":
                self._greet(remote, str(message["c"]), str(message["r"]))
            else:
                self._terminal_closed(remote, int(message.get("code") or GOING_AWAY))
        elif kind == "refused":
            remote = self.remote.get(key)
            hello = remote.hellos.pop(str(message["c"]), None) if remote else None
            if hello is not None and not hello.done():
                hello.set_exception(TerminalError(str(message["code"]), str(message["m"])))
        elif kind == "attach":
            self._spawn(self.host.serve_attach(key, node, message))
        else:
            self.host.relayed_input(self.host.proxies.get((key, node)), kind, message)

    # -- liveness ----------------------------------------------------------------------

    async def _on_beat(self, _channel: str, payload: bytes) -> None:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            self.heard[str(json.loads(payload)["from"])] = time.monotonic()

    async def _beat_loop(self) -> None:
        while True:
            try:
                await self.broker.publish(NODES_CHANNEL, json.dumps({"from": self.node}).encode())
                await self._renew_leases()
                self._expire(time.monotonic())
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("terminal router beat failed")
            await asyncio.sleep(self.beat_s)

    async def _renew_leases(self) -> None:
        live = {k for k, t in self.hub.terminals.items() if not t.closed} | self._claiming
        ended = [k for k in self._owned if k not in live]
        if not live and not ended:
            return
        async with self.db.acquire() as conn:
            if ended:
                await owners.release(conn, self.node, ended)
            if live:
                await owners.renew(conn, self.node, sorted(live, key=str), self.lease_s)
        self._owned.difference_update(ended)  # in place: the host shares the set
        self._owned.update(live)

    def _expire(self, now: float) -> None:
        def dead(node: str) -> bool:
            return now - self.heard.get(node, now) > self.lease_s

        for node, seen in list(self.heard.items()):
            if now - seen > FORGET_NODE_AFTER * self.lease_s:
                del self.heard[node]  # long gone: a node id is never reused

        for remote in list(self.remote.values()):
            if dead(remote.owner):
                log.warning("terminal %s: owner node %s is gone", remote.key, remote.owner)
                self.owners_gone += 1
                for hello in remote.hellos.values():
                    if not hello.done():
                        hello.set_exception(TerminalError(
                            "owner_unreachable", "the node running this terminal is gone"))
                self._relay_frame(remote, json.dumps(["disconnect", TERMINAL_GONE]))
                self._terminal_closed(remote, TERMINAL_GONE)
        for proxy in self.host.drop_nodes(dead):
            log.warning("terminal %s: relaying node %s is gone", proxy.terminal.key, proxy.node)

    async def _publish(self, node: str, message: dict[str, Any]) -> None:
        message["from"] = self.node
        await self.broker.publish(node_channel(node), json.dumps(message).encode())

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

