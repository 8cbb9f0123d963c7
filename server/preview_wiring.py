"""The preview origin and the deployment runtime, built and stopped by the app lifespan.

The preview origin is a second listener of this process (``PREVIEW_HOST``:``PREVIEW_PORT``)
serving only ``preview.proxy``: nothing of the IDE (no API, no page, no token) is on it.
Without the local sandbox (Judge0 backend, no bubblewrap) there are no previews: the
deployment endpoints answer 503 ``previews_unavailable``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import uvicorn

from collab.ports import Documents
from execution.local import LocalBackend
from persistence.crypto import Keyring
from persistence.db import Database
from preview.builds import Deployer, Target
from preview.proxy import PreviewProxy
from preview.runtime import PreviewRuntime
from preview.vercel import VercelTarget
from server.settings import Settings
from storage.objects import ObjectStore

log = logging.getLogger(__name__)

Publish = Callable[[Any, dict[str, Any]], Awaitable[None]]


@dataclass
class Previews:
    runtime: PreviewRuntime
    proxy: PreviewProxy
    deployer: Deployer
    server: uvicorn.Server
    sock: socket.socket
    task: asyncio.Task[None]

    @property
    def origin(self) -> str:
        return self.runtime.origin

    def health(self) -> dict[str, Any]:
        return self.runtime.health()

    async def close(self) -> None:
        self.server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.server.shutdown(sockets=[self.sock])
        self.sock.close()
        await self.proxy.close()
        await self.runtime.close()


async def start_previews(settings: Settings, db: Database, local: LocalBackend | None,
                         publish: Publish, keyring: Keyring, *,
                         documents: Documents | None = None,
                         objects: ObjectStore | None = None,
                         targets: dict[str, Target] | None = None) -> Previews | None:
    config = settings.preview
    if local is None or not config.enabled:
        return None
    sock = socket.socket(socket.AF_INET6 if ":" in config.host else socket.AF_INET)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit it: a response's head and body go out at once instead
    # of the body waiting for the client's delayed ACK (40 ms) under Nagle.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((config.host, config.port))
    except OSError as exc:
        sock.close()
        log.error("previews off: cannot listen on %s:%s (%s); set PREVIEW_PORT", config.host,
                  config.port, exc)
        return None
    sock.listen(1024)
    sock.setblocking(False)
    runtime = PreviewRuntime(config, settings.execution, local.sandbox, local.uids, db,
                             publish, documents=documents, objects=objects)
    if config.origin is None:
        runtime.origin = f"http://localhost:{sock.getsockname()[1]}"
    await runtime.start()
    proxy = PreviewProxy(runtime, db, settings.jwt_secret)
    # log_config and log_level None, access_log left on: a second Config must not
    # reconfigure the process's logging (it would reset the main server's redacting
    # loggers; access_log=False would silence uvicorn.access for both). A session link's
    # ticket is a JWT in ``?ticket=``: redacted like ``?token=``.
    server_config = uvicorn.Config(proxy, lifespan="off", log_config=None, log_level=None,
                                   proxy_headers=False,
                                   ws_per_message_deflate=False,
                                   ws_max_size=settings.collab.max_message_bytes)
    server_config.load()
    server = uvicorn.Server(server_config)
    # Not ``serve()``: it would take over the process's signal handlers from the main server.
    server.lifespan = server_config.lifespan_class(server_config)
    await server.startup(sockets=[sock])
    task = asyncio.create_task(server.main_loop(), name="preview-origin")
    vercel = VercelTarget(db, keyring, settings.integrations.vercel_url,
                          timeout_s=config.vercel_timeout_s, poll_s=config.vercel_poll_s)
    deployer = Deployer(db, keyring, runtime, config, publish,
                        {"vercel": vercel, **(targets or {})})
    log.info("previews served at %s", runtime.origin)
    return Previews(runtime, proxy, deployer, server, sock, task)
