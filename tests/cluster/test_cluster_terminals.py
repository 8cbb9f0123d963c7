"""Terminals on any node (execution/terminal_relay.py): two clients of one terminal through
``make cluster``'s round-robin proxy share one shell; the clients of a node that dies are
told so (4410) and the next attach starts a new shell."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp

from sockets.close_codes import TERMINAL_GONE
from tests.cluster.command import start_cluster_command, wait_cluster_ready
from tests.cluster.conftest import ClusterWorld, StartNodes
from tests.cluster.ports import consecutive_free_ports
from tests.cluster.sockets import open_terminal, start_two_nodes
from tests.conftest import TEST_ORIGIN


async def _health(session: aiohttp.ClientSession, port: int) -> dict[str, Any]:
    async with session.get(f"http://127.0.0.1:{port}/healthz") as resp:
        body: dict[str, Any] = await resp.json()
        return body


async def test_two_clients_through_the_round_robin_proxy_share_one_shell(
    database_url: str, cluster_world: ClusterWorld, exec_root: Path, tmp_path: Path
) -> None:
    world = cluster_world
    base = consecutive_free_ports(4)  # proxy, node 1, node 2, redis
    log_path = tmp_path / "cluster.log"
    proc = start_cluster_command(base, database_url, exec_root / "cluster", log_path,
                                 {"ALLOWED_ORIGINS": TEST_ORIGIN})
    try:
        await wait_cluster_ready(base, log_path)
        # A new TCP connection per socket: the proxy sends consecutive ones to each node.
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector) as session:
            proxy = f"ws://127.0.0.1:{base}"
            first = await open_terminal(session, proxy, world.project, world.owner)
            second = await open_terminal(session, proxy, world.project, world.member)
            nodes = [await _health(session, port) for port in (base + 1, base + 2)]
            routers = sorted((n["terminal_router"]["proxies"],
                              n["terminal_router"]["relayed_clients"]) for n in nodes)
            # One node runs the shell (and a proxy for the other's client), one relays.
            assert routers == [(0, 1), (1, 0)], routers
            assert sum(n["terminals"]["terminals"] for n in nodes) == 1

            await first.type("echo from-first-$((3*7))")
            await first.wait_for("from-first-21")
            await second.wait_for("from-first-21")
            await second.type("echo from-second-$((6*7))")
            await second.wait_for("from-second-42")
            await first.wait_for("from-second-42")
            # One shell: a variable set by one client is seen by the other's command.
            await first.type("export SHARED=one-shell")
            await second.type("echo shared=$SHARED")
            await first.wait_for("shared=one-shell")
            await second.wait_for("shared=one-shell")
            await first.close()
            await second.close()
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        code = await asyncio.to_thread(proc.wait, 40)
        assert code == 0, log_path.read_text()[-3000:]


async def test_clients_of_a_dead_nodes_terminal_are_told_and_can_start_a_new_shell(
    start_nodes: StartNodes, cluster_world: ClusterWorld, exec_root: Path
) -> None:
    world = cluster_world
    a, b = await start_two_nodes(start_nodes, exec_root)
    async with aiohttp.ClientSession() as session:
        owner_term = await open_terminal(session, a.ws_url, world.project, world.owner)
        relayed = await open_terminal(session, b.ws_url, world.project, world.member)
        await relayed.type("echo alive-$((1+1))")
        await owner_term.wait_for("alive-2")
        await relayed.wait_for("alive-2")

        a.signal(signal.SIGKILL)  # the node and its shell die without a word
        killed = time.monotonic()
        await relayed.wait_closed(15.0)
        told_after = (relayed.closed_at or float("inf")) - killed
        print(f"the relayed client was told after {told_after:.2f} s")
        assert relayed.close_code == TERMINAL_GONE
        assert json.dumps(["disconnect", TERMINAL_GONE]) in relayed.frames
        # Lease 3 s + one beat (1 s), plus scheduling on a busy machine.
        assert told_after <= 6.0

        # The lease has run out: an attach on the live node starts a shell of its own.
        await asyncio.sleep(0.5)
        fresh = await open_terminal(session, b.ws_url, world.project, world.member)
        await fresh.type("echo reborn-$((4+4))")
        await fresh.wait_for("reborn-8")
        await fresh.close()


async def test_the_shell_takes_the_smallest_size_of_clients_on_both_nodes(
    start_nodes: StartNodes, cluster_world: ClusterWorld, exec_root: Path
) -> None:
    world = cluster_world
    a, b = await start_two_nodes(start_nodes, exec_root)
    async with aiohttp.ClientSession() as session:
        local = await open_terminal(session, a.ws_url, world.project, world.owner)
        relayed = await open_terminal(session, b.ws_url, world.project, world.member)
        await local.ws.send_str(json.dumps(["set_size", 30, 100]))
        await relayed.ws.send_str(json.dumps(["set_size", 20, 90]))
        await relayed.type("echo size-$(stty size | tr ' ' x)")
        await local.wait_for("size-20x90")
        await relayed.close()  # the relaying node's last client: its size no longer counts
        await asyncio.sleep(0.3)
        await local.type("echo size-$(stty size | tr ' ' x)")
        await local.wait_for("size-30x100")
        await local.close()


async def test_the_owner_forgets_the_clients_of_a_relaying_node_that_died(
    start_nodes: StartNodes, cluster_world: ClusterWorld, exec_root: Path
) -> None:
    world = cluster_world
    a, b = await start_two_nodes(start_nodes, exec_root)
    async with aiohttp.ClientSession() as session:
        local = await open_terminal(session, a.ws_url, world.project, world.owner)
        relayed = await open_terminal(session, b.ws_url, world.project, world.member)
        await relayed.type("echo relayed-$((2+3))")
        await local.wait_for("relayed-5")
        port = a.port
        assert (await _health(session, port))["terminal_router"]["proxies"] == 1
        b.signal(signal.SIGKILL)
        killed = time.monotonic()
        while (await _health(session, port))["terminal_router"]["proxies"]:
            assert time.monotonic() - killed < 8.0, "the dead node's proxy was kept"
            await asyncio.sleep(0.2)
        # The shell lives on for its own client.
        await local.type("echo still-$((3+4))")
        await local.wait_for("still-7")
        await local.close()


async def test_each_socket_on_a_relaying_node_is_greeted_once_with_its_scrollback(
    start_nodes: StartNodes, cluster_world: ClusterWorld, exec_root: Path
) -> None:
    """The owner's outbox for a node is shared by that node's sockets: a second socket's
    setup and scrollback must reach it alone, and output after it reaches both once."""
    world = cluster_world
    a, b = await start_two_nodes(start_nodes, exec_root)
    async with aiohttp.ClientSession() as session:
        local = await open_terminal(session, a.ws_url, world.project, world.owner)
        first = await open_terminal(session, b.ws_url, world.project, world.member)
        await local.type("echo before-$((5*5))")
        await first.wait_for("before-25")
        second = await open_terminal(session, b.ws_url, world.project, world.owner)
        await second.wait_for("before-25")  # its scrollback
        await local.type("echo after-$((6*6))")
        await first.wait_for("after-36")
        await second.wait_for("after-36")
        for socket in (first, second):
            setups = [f for f in socket.frames if json.loads(f)[0] == "setup"]
            assert len(setups) == 1, socket.frames
            assert socket.text.count("after-36") == 1, socket.text
        # The first socket saw "before-25" once live, never again as the second's scrollback.
        assert first.text.count("before-25") == 1, first.text
        for socket in (local, first, second):
            await socket.close()
