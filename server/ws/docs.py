"""``GET /ws/docs/{file_id}?token=JWT``: document sync (y-websocket protocol, binary frames).

A raw ASGI endpoint: Starlette's ``WebSocket`` is used for the handshake (authentication,
authorization, accept). Afterwards, under our uvicorn protocol (server/ws_transport.py),
every frame for a peer is written straight to its transport: one room broadcast is one
synchronous write per peer, with no task or coroutine per socket. Under another ASGI
server a peer is a bounded queue drained by a writer task through ``send``.

Either way the unsent backlog is bounded (``WS_SEND_BUFFER_BYTES``): a slow consumer is
closed with 1013, never silently skipped. Keepalive pings are uvicorn's
(``ws_ping_interval``, 20 s by default).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from collab import metrics
from collab.hub import DocumentHub
from collab.room import Room
from collab.store import FileGone
from server.access import Access, file_access, parse_uuid
from server.auth.tokens import Principal
from server.membership import Membership
from server.services import Services
from server.ws_auth import authenticate_raw, refuse
from server.ws_transport import DirectChannel
from sockets.close_codes import (
    BAD_MESSAGE,
    FORBIDDEN,
    INTERNAL_ERROR,
    NOT_A_DOCUMENT,
    NOT_FOUND,
    SLOW_CONSUMER,
    TRY_AGAIN_LATER,
)
from sockets.outbox import DirectOutbox, QueuedOutbox, direct_channel

log = logging.getLogger(__name__)

class _Identity:
    """The fields of collab.room's ``Peer`` protocol, set by ``identify``."""

    __slots__ = ()

    conn_id: str
    user_id: str
    workspace_id: uuid.UUID
    read_only: bool
    denied_sent: bool
    awareness_ids: set[int]


_IDENTITY_SLOTS = ("awareness_ids", "conn_id", "denied_sent", "read_only", "user_id",
                   "workspace_id")


def identify(peer: SocketPeer, user_id: str, workspace_id: uuid.UUID, read_only: bool) -> None:
    peer.conn_id = uuid.uuid4().hex[:12]
    peer.user_id = user_id
    peer.workspace_id = workspace_id
    peer.read_only = read_only
    peer.denied_sent = False
    peer.awareness_ids = set()
    peer.on_slow = lambda backlog: _slow_consumer(peer, backlog)


class DirectPeer(DirectOutbox, _Identity):
    """The hub's ``Peer`` over a direct channel: each frame goes to the transport at once
    (``send`` is the outbox's ``send_bytes`` itself: no extra call per delivered update)."""

    __slots__ = (*_IDENTITY_SLOTS, "send_limit")
    send_limit: int  # the configured backlog bound (``_limit`` grows during a large sync)
    send = DirectOutbox.send_bytes

    @property
    def channel(self) -> DirectChannel:
        channel = self._channel
        assert isinstance(channel, DirectChannel)
        return channel

    @property
    def deflate_bits(self) -> int | None:
        return self.channel.deflate_bits

    def send_large(self, data: bytes, deflated: bool = False) -> None:
        """A large document's initial sync (collab/full_sync.py). While the client reads
        it, the backlog bound is raised by its size (an edit due meanwhile does not make
        it a slow consumer); once the transport has drained, the bound is back."""
        if self._closed:
            return
        channel = self.channel
        if channel.buffered > self.send_limit:
            self._slow(channel.buffered)  # e.g. Step1 after Step1 without reading
            return
        self._limit = channel.buffered + len(data) + self.send_limit
        channel.on_drain(self._drained)
        channel.send_large(data, deflated)

    def _drained(self) -> None:
        self._limit = self.send_limit
        self.channel.on_drain(None)


class QueuedPeer(QueuedOutbox, _Identity):
    """The hub's ``Peer`` over plain ASGI (another server): a bounded queue and a writer."""

    __slots__ = _IDENTITY_SLOTS
    send = QueuedOutbox.send_bytes
    deflate_bits = None  # the ASGI server's own extensions decide


SocketPeer = DirectPeer | QueuedPeer


def _open_peer(
    scope: Scope, send: Send, *, user_id: str, workspace_id: uuid.UUID, read_only: bool,
    buffer_max: int,
) -> SocketPeer:
    channel = direct_channel(scope)
    peer: SocketPeer
    if channel is not None:
        peer = DirectPeer(channel, buffer_max)
        peer.send_limit = buffer_max
    else:
        peer = QueuedPeer(send, buffer_max)
    identify(peer, user_id, workspace_id, read_only)
    return peer


def _slow_consumer(peer: SocketPeer, backlog: int) -> None:
    log.warning("slow consumer: conn=%s user=%s (%d bytes unsent)",
                peer.conn_id, peer.user_id, backlog)
    metrics.CLOSES.labels(str(SLOW_CONSUMER)).inc()


async def _refuse(websocket: WebSocket, code: int, reason: str) -> None:
    metrics.CLOSES.labels(str(code)).inc()
    await refuse(websocket, code, reason)


@dataclass(frozen=True)
class Admission:
    """What a socket allowed on a document needs: the hub, the membership path, the file."""

    hub: DocumentHub
    membership: Membership
    file_id: uuid.UUID
    access: Access


async def admit(
    services: Services, principal: Principal, raw_file_id: str
) -> Admission | tuple[int, str]:
    """The socket's admission, or the close code and reason that refuse it."""
    file_id = parse_uuid(raw_file_id)
    access = None
    if file_id is not None:
        checks = services.file_checks  # a burst of joins shares one query
        access = await (
            checks.check(principal.user_id, file_id) if checks is not None
            else file_access(services.db, principal.user_id, file_id)
        )
    if file_id is None or access is None or access.is_folder or access.is_deleted:
        return NOT_FOUND, "no such file"
    if not access.is_member:
        return FORBIDDEN, "not a member of this file's workspace"
    if access.is_stored:
        return NOT_A_DOCUMENT, "a binary or large file is not a document"
    hub: DocumentHub | None = services.documents
    if hub is None:
        return TRY_AGAIN_LATER, "documents are not available"
    membership: Membership | None = services.membership
    if membership is None:
        return TRY_AGAIN_LATER, "membership is not available"
    return Admission(hub, membership, file_id, access)


async def join_room(admission: Admission, peer: SocketPeer) -> Room | None:
    """The peer in its room, or None once it was closed with the reason it could not join."""
    try:
        return await admission.hub.join(admission.file_id, peer)
    except FileGone:
        peer.close(NOT_FOUND, "no such file")
        metrics.CLOSES.labels(str(NOT_FOUND)).inc()
    except RuntimeError:  # the hub is stopping
        peer.close(TRY_AGAIN_LATER, "server restarting")
    except Exception:
        log.exception("loading document %s failed (conn=%s user=%s)",
                      admission.file_id, peer.conn_id, peer.user_id)
        peer.close(INTERNAL_ERROR, "could not load the document")
        metrics.CLOSES.labels(str(INTERNAL_ERROR)).inc()
    except BaseException:  # cancelled while the document loaded: stop the writer too
        await peer.finish()
        raise
    await peer.finish()
    return None


class DocumentSocket:
    """The ASGI app mounted at ``/ws/docs/{file_id}``."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        opened = await authenticate_raw(scope, receive, send)
        if opened is None:
            return
        websocket, services, principal = opened
        admission = await admit(services, principal, scope["path_params"]["file_id"])
        if isinstance(admission, tuple):
            await _refuse(websocket, *admission)
            return
        await websocket.accept()
        user_id, access = principal.user_id, admission.access
        read_only, buffer_max = not access.can_write, services.settings.collab.send_buffer_bytes
        # This frame and the scope live as long as the socket: keep only what the peer needs
        # (the handshake's headers and the token in the query string are not needed again).
        del websocket, principal
        scope["headers"], scope["query_string"] = [], b""
        peer = _open_peer(scope, send, user_id=user_id, workspace_id=access.workspace_id,
                          read_only=read_only, buffer_max=buffer_max)
        room = await join_room(admission, peer)
        if room is None:
            return
        hub, membership = admission.hub, admission.membership
        # Membership hook: a role change or removal reaches this socket (server/membership.py).
        ticket = await membership.track(user_id, access.workspace_id, "document", access.role,
                                        lambda new_role: follow_role(peer, new_role))
        del access, admission  # this frame lives as long as a socket that is not detached

        def gone() -> None:
            membership.release(ticket)
            hub.leave(room, peer)

        detached = False
        try:
            detached = await self._serve(hub, room, peer, receive, gone)
        finally:
            if not detached:
                gone()
                await peer.finish()

    @staticmethod
    async def _serve(
        hub: DocumentHub, room: Room, peer: SocketPeer, receive: Receive,
        gone: Callable[[], None],
    ) -> bool:
        """Frames until the socket closes; True if the socket was handed to its transport."""
        channel = peer.channel if isinstance(peer, DirectPeer) else None
        while not peer.closed:
            if channel is not None and channel.nothing_queued:
                # What the ASGI queue held has been handled, so the order is kept. From
                # here frames go from the transport straight to the hub, and leaving runs
                # when the connection is lost: no coroutine waits per socket.
                if channel.detach(
                    lambda data: on_frame(hub, room, peer, data),
                    gone,
                ):
                    return True
                channel = None
            message = await receive()
            kind = message["type"]
            if kind == "websocket.receive":
                data = message.get("bytes")
                on_frame(hub, room, peer, message["text"] if data is None else data)
            elif kind == "websocket.disconnect":
                return False
        return False


def follow_role(peer: SocketPeer, role: str | None) -> None:
    """The membership path's verdict: removed -> closed (4403); a viewer's socket is
    read-only (its updates are refused), a member's or above writable again."""
    if role is None:
        if not peer.closed:
            metrics.CLOSES.labels(str(FORBIDDEN)).inc()
            peer.close(FORBIDDEN, "access revoked")
        return
    peer.read_only = role == "viewer"
    peer.denied_sent = False


def on_frame(hub: DocumentHub, room: Room, peer: SocketPeer, data: bytes | str) -> None:
    if isinstance(data, str):
        log.warning("document protocol fault: conn=%s user=%s file=%s: text frame",
                    peer.conn_id, peer.user_id, room.file_id)
        metrics.CLOSES.labels(str(BAD_MESSAGE)).inc()
        peer.close(BAD_MESSAGE, "binary frames only")
        return
    hub.receive(room, peer, data)


document_socket = DocumentSocket()
