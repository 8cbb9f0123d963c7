"""``GET /ws/projects/{project_id}?token=JWT``: the project channel (JSON text frames).

Authenticates (Origin, token), authorizes (any workspace role, viewers included: they
watch and have presence), then hands the socket to the ``projects`` hub.
"""

from __future__ import annotations

import logging
import uuid

from starlette.websockets import WebSocket

from collab.project_hub import ProjectHub
from collab.project_presence import Identity
from server.access import parse_uuid, project_access
from server.membership import Membership
from server.services import Services
from server.ws_auth import authenticate_websocket, refuse
from sockets.close_codes import FORBIDDEN, NOT_FOUND, TRY_AGAIN_LATER
from sockets.outbox import open_outbox
from sockets.receive import messages

log = logging.getLogger(__name__)


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
    hub: ProjectHub | None = services.projects
    if hub is None:
        await refuse(websocket, TRY_AGAIN_LATER, "the project channel is not available")
        return
    membership: Membership | None = services.membership
    if membership is None:
        await refuse(websocket, TRY_AGAIN_LATER, "membership is not available")
        return
    await websocket.accept()
    who = Identity(
        user_id=uuid.UUID(principal.user_id),
        role=access.role,
        email=principal.email,
        name=display_name(principal.claims),
    )
    limit = services.settings.collab.send_buffer_bytes
    outbox = open_outbox(websocket.scope, websocket.send, limit)
    # Membership hook (server/membership.py): on a change the hub re-reads the roles of its
    # sockets once (closing the removed with 4403, updating presence of the others).
    ticket = await membership.track(principal.user_id, access.workspace_id, "project",
                                    access.role, lambda _role: hub.check_roles(), once_key=hub)
    try:
        await hub.serve(project_id, outbox, messages(websocket.receive), who)
    finally:
        membership.release(ticket)
        await outbox.finish()
