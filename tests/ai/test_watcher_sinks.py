"""Chat watchers: frames straight to a socket's direct channel, or queued for a writer
(the socket's outbox either way, sockets.outbox).

Under our uvicorn protocol a conversation socket's watcher writes each frame to the
transport from the hub's fan-out loop; under a plain ASGI server it falls back to a queue
and a writer task. Both must deliver the same events in the same order.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses

import uvicorn

from ai.chat_watchers import Delta, Watcher
from server.app import create_app
from server.settings import Settings
from sockets.outbox import QueuedOutbox
from tests.ai.conftest import fake_openai_config
from tests.ai.helpers import Team, connect
from tests.fakes import openai_server
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.sse_server import Script
from tests.support.net import free_port, wait_http_ok
from tests.support.servers import LiveServer


class FakeSink:
    def __init__(self) -> None:
        self.sent: list[str] = []
        self.buffered = 0

    def send_text(self, text: str) -> None:
        self.sent.append(text)


def test_a_sink_watcher_sends_at_once_and_is_closed_past_its_backlog() -> None:
    sink = FakeSink()
    overflows: list[bool] = []
    watcher = Watcher(sink=sink, sink_max_buffered=100,
                      on_overflow=lambda: overflows.append(True))
    delta = Delta("m", 1, "a", '{"type":"delta","message_id":"m","seq":1,"text":"a"}')
    watcher.push('{"type":"message_created"}')
    watcher.push(delta)
    # Sent in the push itself, the delta's one encoded frame as it is; nothing queued.
    assert sink.sent == ['{"type":"message_created"}', delta.frame]
    assert watcher.queue.empty()
    sink.buffered = 101  # the client stopped reading
    watcher.push('{"type":"done"}')
    assert watcher.overflowed and watcher.closed and overflows == [True]
    watcher.push('{"type":"late"}')
    assert len(sink.sent) == 2


async def test_the_socket_watches_through_the_direct_channel(
    chat_server: LiveServer, fake_openai: FakeOpenAI, team: Team
) -> None:
    fake_openai.play(Script(chunks=openai_server.stream(["a", "b", "c"])))
    owner = await connect(chat_server.ws_url, team.conversation, team.owner)
    viewer = await connect(chat_server.ws_url, team.conversation, team.viewer)
    await owner.ask("abc?")
    done = await owner.until("done")
    await viewer.until("done")
    hub = chat_server.app.state.services.chat
    watchers = hub.rooms[team.conversation].watchers
    assert len(watchers) == 2 and all(w.sink is not None for w in watchers)
    assert owner.events == viewer.events
    assert owner.text(done["message_id"]) == "abc"
    await owner.close()
    await viewer.close()


async def test_under_plain_asgi_the_socket_falls_back_to_a_writer(
    fake_openai: FakeOpenAI, settings: Settings, team: Team
) -> None:
    # uvicorn's own sans-I/O protocol: no direct channel in the scope.
    app = create_app(dataclasses.replace(settings, ai=fake_openai_config(fake_openai)))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="on",
        ws="websockets-sansio", ws_per_message_deflate=False,
    ))
    task = asyncio.create_task(server.serve())
    try:
        await wait_http_ok(f"http://127.0.0.1:{port}/healthz")
        fake_openai.play(Script(chunks=openai_server.stream(["x", "y"])))
        client = await connect(f"ws://127.0.0.1:{port}", team.conversation, team.member)
        await client.ask("xy?")
        done = await client.until("done")
        assert client.text(done["message_id"]) == "xy"
        hub = app.state.services.chat
        (watcher,) = hub.rooms[team.conversation].watchers
        # The socket's outbox is the queued one: frames wait for its writer task.
        assert isinstance(watcher.sink, QueuedOutbox)
        await client.send({"type": "ping"})
        assert (await client.until("pong"))["type"] == "pong"
        await client.close()
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 15)
