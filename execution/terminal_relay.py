"""Terminals reachable from any node: one PTY per terminal, on its owner node; sockets on
other nodes reach it over the broker, so any load balancer (round-robin included) works.

Ownership: ``terminal_owners`` (sql/0210) names the node running each terminal, under a
lease the owner renews every ``beat_s``. A socket that may start the terminal claims the
row (free, its own, or its lease ran out) and gets the owner back; a viewer only reads it.

Between nodes (broker messages, JSON; each node listens on ``terminal-node:{node}``):
  relay -> owner  ``attach`` (client id, user, may type) | ``in`` (typed text) | ``size``
                  (the smallest of that node's clients) | ``detach`` (client id)
  owner -> relay  ``term``: what the owner's terminal sends that node, in order: ``hello``
                  (a client's scrollback; its output starts after it), ``stdout``,
                  ``disconnect``, or null (the terminal closed) | ``refused`` (an attach)
On the owner a relaying node is one client of the terminal (``execution.terminal_owner``);
on the relay each socket keeps its own bounded queue (a slow one is closed with 1013, like
locally).

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

from collab.broker import Broker
from execution.terminal_owner import TerminalHost
from execution.terminals import SLOW_CLIENT, Client, Message, Terminal, TerminalError, TerminalHub
from persistence import terminal_owners as owners
from persistence.db import Database

log = logging.getLogger(__name__)

NODES_CHANNEL = "terminal-nodes"
TERMINAL_GONE = 4410  # the node running the shell died (server/close_codes.py)
GOING_AWAY = 1001
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
    hellos: dict[str, asyncio.Future[Message]] = field(default_factory=dict)
    closed: bool = False
    reading: bool = True  # the socket's send loop never has to resume anything here
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
        await self.host.close(2.0)
        for remote in list(self.remote.values()):
            for client in list(remote.ids):
                self._detach_remote(remote, client)
                _close_client(client, GOING_AWAY)
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

    def health(self) -> dict[str, Any]:
        return {"node": self.node, "relayed_terminals": len(self.remote),
                "relayed_clients": sum(len(r.ids) for r in self.remote.values()),
                "proxies": len(self.host.proxies), "owners_gone": self.owners_gone}

    # -- what sockets call ---------------------------------------------------------------

    async def attach(
        self, project_id: uuid.UUID, name: str, user_id: uuid.UUID, can_write: bool
    ) -> tuple[AnyTerminal, Client, str]:
        key = (project_id, name)
        local = self.hub.terminals.get(key)
        if local is not None and not local.closed:
            return await self.hub.attach(project_id, name, user_id, can_write)
        if can_write:
            self._claiming.add(key)  # before the claim: the lease renewal keeps its row
        try:
            async with self.db.acquire() as conn:
                if can_write:
                    owner = await owners.claim(conn, project_id, name, self.node, self.lease_s)
                else:
                    owner = await owners.live_owner(conn, project_id, name)
            if owner is None or owner == self.node:
                attached = await self.hub.attach(project_id, name, user_id, can_write)
                self._owned.add(key)
                return attached
        finally:
            self._claiming.discard(key)
        return await self._attach_remote(key, owner, user_id, can_write)

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

    def client_drained(self, terminal: AnyTerminal) -> None:
        if isinstance(terminal, Terminal):
            self.hub.client_drained(terminal)

    def disconnect(self, terminal: AnyTerminal, client: Client, code: int) -> None:
        """Stop this client now (its access was revoked): no more input, its socket closes."""
        client.can_write = False
        self.detach(terminal, client)
        _close_client(client, code)

    # -- the relay side ----------------------------------------------------------------

    async def _attach_remote(
        self, key: Key, owner: str, user_id: uuid.UUID, can_write: bool
    ) -> tuple[RemoteTerminal, Client, str]:
        remote = self.remote.get(key)
        if remote is None or remote.closed or remote.owner != owner:
            remote = RemoteTerminal(key, owner)
            self.remote[key] = remote
        self.heard.setdefault(owner, time.monotonic())
        client = Client(user_id, can_write, asyncio.Queue(self.hub.config.terminal_client_queue))
        client_id = uuid.uuid4().hex
        hello: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        remote.ids[client] = client_id
        remote.hellos[client_id] = hello
        self._to_owner(remote, "attach", c=client_id, u=str(user_id), w=can_write)
        try:
            answer = await asyncio.wait_for(hello, self.attach_timeout_s)
        except TimeoutError:
            self._forget(remote, client, client_id)
            raise TerminalError("owner_unreachable",
                                "the node running this terminal did not answer") from None
        except BaseException:  # refused (TerminalError) or cancelled
            self._forget(remote, client, client_id)
            raise
        self.heard[owner] = time.monotonic()
        return remote, client, str(answer[2]) if answer else ""

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

    def _from_owner(self, remote: RemoteTerminal, message: Message, code: int | None) -> None:
        if message is None:
            remote.closed = True
            for client in list(remote.ids):
                _close_client(client, client.closed_code or code or GOING_AWAY)
            remote.ids.clear()
            if self.remote.get(remote.key) is remote:
                del self.remote[remote.key]
            return
        kind = message[0]
        if kind == "hello":
            hello = remote.hellos.pop(str(message[1]), None)
            greeted = remote.client(str(message[1]))
            if hello is not None and not hello.done() and greeted is not None:
                remote.ready.add(greeted)
                hello.set_result(message)
        elif kind == "disconnect":
            for client in list(remote.ids):
                client.push(message, force=True)
        else:
            for client in list(remote.ready):
                if client.behind:  # this socket falls behind: it reconnects for scrollback
                    self._detach_remote(remote, client)
                    _close_client(client, SLOW_CLIENT)
                else:
                    client.push(message)

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
        if kind == "term":
            remote = self.remote.get(key)
            if remote is not None and remote.owner == node:
                self._from_owner(remote, message.get("m"), message.get("code"))
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
                for client in list(remote.ids):
                    client.push(["disconnect", TERMINAL_GONE], force=True)
                    client.closed_code = TERMINAL_GONE
                remote.closed = True
                self._from_owner(remote, None, TERMINAL_GONE)
        for proxy in self.host.drop_nodes(dead):
            log.warning("terminal %s: relaying node %s is gone", proxy.terminal.key, proxy.node)

    async def _publish(self, node: str, message: dict[str, Any]) -> None:
        message["from"] = self.node
        await self.broker.publish(node_channel(node), json.dumps(message).encode())

    def _spawn(self, coro: Any) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _close_client(client: Client, code: int) -> None:
    client.closed_code = client.closed_code or code
    client.push(None, force=True)
