"""``GET /ws/projects/{project_id}?token=JWT``: the project channel (JSON text frames).

Authenticates (Origin, token), authorizes (any workspace role, viewers included: they
watch and have presence), then hands the socket to the ``projects`` hub.
"""

from __future__ import annotations

import logging
import uuid

from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from collab.project_hub import Identity, ProjectHub
from server.access import parse_uuid, project_access
from server.close_codes import FORBIDDEN, NOT_FOUND
from server.membership import Membership
from server.services import Services
from server.ws_auth import authenticate_websocket, refuse

log = logging.getLogger(__name__)


class StarletteTextChannel:
    """The hub's ``TextChannel`` over a Starlette WebSocket."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket

    async def receive(self) -> str | bytes | None:
        try:
            message = await self.websocket.receive()
        except (WebSocketDisconnect, RuntimeError):
            return None
        if message["type"] == "websocket.disconnect":
            return None
        text = message.get("text")
        if text is not None:
            return str(text)
        data = message.get("bytes")
        return bytes(data) if data is not None else b""

    async def send_text(self, text: str) -> None:
        await self.websocket.send_text(text)

    async def close(self, code: int, reason: str) -> None:
        if self.websocket.application_state == WebSocketState.CONNECTED:
            try:
                await self.websocket.close(code, reason)
            except RuntimeError:
                pass  # already closing


def display_name(claims: dict[str, object]) -> str | None:
    meta = claims.get("user_metadata")
    if isinstance(meta, dict):
        for key in ("full_name", "name"):
            value = meta.get(key)
            if isinstance(value, str) and value:
                return value
    return None


async def project_socket(websocket: WebSocket) -> None:
    services: Services = websocket.app.state.services
    principal = await authenticate_websocket(websocket, services.settings)
    if principal is None:
        return
    project_id = parse_uuid(websocket.path_params["project_id"])
    access = None
    if project_id is not None:
        access = await project_access(services.db, principal.user_id, project_id)
    if access is None or project_id is None:
        await refuse(websocket, NOT_FOUND, "no such project")
        return
    if not access.is_member or access.role is None:
        await refuse(websocket, FORBIDDEN, "not a member of this project's workspace")
        return
    hub: ProjectHub = services.hubs["projects"]
    await websocket.accept()
    who = Identity(
        user_id=uuid.UUID(principal.user_id),
        role=access.role,
        email=principal.email,
        name=display_name(principal.claims),
    )
    # Membership hook (server/membership.py): on a change the hub re-reads the roles of its
    # sockets once (closing the removed with 4403, updating presence of the others).
    membership: Membership = services.hubs["membership"]
    ticket = await membership.track(principal.user_id, access.workspace_id, "project",
                                    access.role, lambda _role: hub.check_roles(), once_key=hub)
    try:
        await hub.serve(project_id, StarletteTextChannel(websocket), who)
    finally:
        membership.release(ticket)
