"""``GET /ws/projects/{project_id}/terminals/{name}?token=JWT``: a shared terminal.

terminado's framing (JSON text frames): in ``["stdin", text]``, ``["set_size", rows, cols]``;
out ``["setup", {}]``, ``["stdout", text]``, ``["disconnect", code]``. Members type, viewers
watch (a viewer cannot start a terminal that is not running). An input message over
``MAX_FRAME`` characters closes the socket with 4413 and says the limit; a binary frame or a
message that is not a well-formed ``stdin``/``set_size`` list closes it with 4400 and says what
was wrong (unknown kinds are ignored, as terminado does). The shell and other clients go on.

The shell may run on another node: the router (execution/terminal_relay.py) attaches there
over the broker. A member removed while the socket is open is disconnected (4403), a
demoted one stops typing (server/membership.py).
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

from starlette.websockets import WebSocket

from execution.terminal_relay import AnyTerminal, TerminalRouter
from execution.terminals import Client, TerminalError
from server.access import parse_uuid, project_access
from server.membership import Membership
from server.services import Services
from server.ws_auth import authenticate_websocket, refuse
from sockets.close_codes import (
    ACCESS_REVOKED,
    BAD_MESSAGE,
    FORBIDDEN,
    GOING_AWAY,
    NOT_FOUND,
    TERMINAL_GONE,
    TOO_LARGE,
    TRY_AGAIN_LATER,
    UNAVAILABLE,
)
from sockets.outbox import open_outbox
from sockets.receive import messages

log = logging.getLogger(__name__)
NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_MAX_SIZE = 10_000  # rows or columns: larger is not a screen
MAX_FRAME = 64 * 1024
# The transport's high-water mark: its drain resumes a PTY paused for slow clients.
MIN_SEND_BUFFER = 64 * 1024
CLOSE_CODES = {"not_running": NOT_FOUND, "sandbox_unavailable": UNAVAILABLE,
               "owner_unreachable": TERMINAL_GONE}


async def terminal_socket(websocket: WebSocket) -> None:
    services: Services = websocket.app.state.services
    principal = await authenticate_websocket(websocket, services.settings)
    if principal is None:
        return
    project_id = parse_uuid(websocket.path_params["project_id"])
    name = websocket.path_params["name"]
    access = None
    if project_id is not None:
        access = await project_access(services.db, principal.user_id, project_id)
    if access is None or project_id is None:
        await refuse(websocket, NOT_FOUND, "no such project")
        return
    if not access.is_member:
        await refuse(websocket, FORBIDDEN, "not a member of this project's workspace")
        return
    if not NAME.match(name):
        await refuse(websocket, BAD_MESSAGE, "bad terminal name")
        return
    hub: TerminalRouter | None = services.terminal_router
    membership: Membership | None = services.membership
    if hub is None or membership is None:
        await refuse(websocket, TRY_AGAIN_LATER, "terminals are not available")
        return
    user_id = uuid.UUID(principal.user_id)
    await websocket.accept()
    limit = max(hub.config.terminal_send_buffer_bytes, MIN_SEND_BUFFER)
    outbox = open_outbox(websocket.scope, websocket.send, limit)
    try:
        try:
            terminal, client = await hub.attach(
                project_id, name, user_id, access.can_write, outbox
            )
        except TerminalError as exc:
            outbox.close(CLOSE_CODES.get(exc.code, TRY_AGAIN_LATER), exc.message)
            return

        # Membership hook (server/membership.py): removed -> disconnected, viewer -> read-only.
        def follow_role(role: str | None) -> None:
            if role is None:
                hub.disconnect(terminal, client, ACCESS_REVOKED)
            else:
                client.can_write = role != "viewer"

        ticket = await membership.track(user_id, access.workspace_id, "terminal", access.role,
                                        follow_role)
        try:
            await _receive_loop(messages(websocket.receive), hub, terminal, client)
        finally:
            membership.release(ticket)
            hub.detach(terminal, client)
            outbox.close(GOING_AWAY, "")
    finally:
        await outbox.finish()


async def _receive_loop(
    incoming: AsyncIterator[str | bytes], hub: TerminalRouter, terminal: AnyTerminal,
    client: Client,
) -> None:
    async for text in incoming:
        if client.outbox.closed:
            return
        if not isinstance(text, str):
            # terminado's framing is JSON text; a client sending binary speaks another
            # protocol, and ignoring it silently hid that (its keystrokes went nowhere).
            client.outbox.close(BAD_MESSAGE, "binary frame: terminal messages are JSON text")
            return
        if len(text) > MAX_FRAME:
            # Typed input arrives in keystrokes and pastes; a message this large is refused
            # out loud (never cut or dropped: half a paste run by the shell is worse).
            log.info("terminal %s: input message of %d characters refused", terminal.key,
                     len(text))
            client.outbox.close(
                TOO_LARGE, f"input message of {len(text)} characters: at most {MAX_FRAME}"
            )
            return
        frame = _parse(text)
        if isinstance(frame, str):
            log.info("terminal %s: malformed message refused: %s", terminal.key, frame)
            client.outbox.close(BAD_MESSAGE, frame)
            return
        kind = frame[0]
        if kind == "stdin":
            hub.write(terminal, client, frame[1])
        elif kind == "set_size":
            hub.resize(terminal, client, frame[1], frame[2])


def _parse(text: str) -> list[Any] | str:
    """The message as terminado's ``[kind, ...]`` list, or why it is not one.

    Unknown kinds stay allowed (ignored, as terminado does) so a newer client's extra messages
    do not cut it off; what is not a JSON list with a string kind is a broken client.
    """
    try:
        frame: Any = json.loads(text)
    except ValueError:
        return "malformed message: not JSON"
    if not isinstance(frame, list) or not frame or not isinstance(frame[0], str):
        return 'malformed message: expected a JSON list like ["stdin", text]'
    kind, args = frame[0], frame[1:]
    if kind == "stdin" and (len(args) != 1 or not isinstance(args[0], str)):
        return 'malformed stdin message: expected ["stdin", text]'
    if kind == "set_size" and (
        len(args) != 2 or not all(type(n) is int and 0 < n <= _MAX_SIZE for n in args)
    ):
        return f'malformed set_size message: expected ["set_size", rows, cols], 1..{_MAX_SIZE}'
    return frame
