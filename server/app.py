"""The ASGI app: builds the services in its lifespan, mounts the endpoints."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.types import Receive, Scope, Send

from ai.analysis import Analyses
from ai.chat import ChatHub
from ai.edits import AIEdits
from ai.workspace_keys import WorkspaceAI, WorkspaceUrls
from collab.broker import Broker, LocalBroker
from collab.hub import DocumentHub
from collab.project_hub import ProjectHub, ProjectHubConfig
from execution.local import LocalBackend
from execution.runner import ExecutionHub
from execution.terminal_relay import TerminalRouter
from execution.terminals import TerminalHub
from execution.volumes import ProjectVolumes
from observability.service import Observability
from persistence.crypto import load_keyring
from persistence.db import Database
from persistence.documents import PostgresDocumentStore
from persistence.editor_sessions import PostgresEditorSessions
from persistence.environment import EnvironmentVariables
from server import __version__
from server.api import API_ROOT, api_app
from server.api.uploads import uploads_route
from server.background import all_jobs, build_worker
from server.errors import ApiError, api_error_handler, http_error_handler
from server.git_wiring import build_git_runtime
from server.health import healthz, readyz
from server.membership import Membership
from server.metrics import metrics_route
from server.oauth.service import OAuthService
from server.observe import RequestObserver
from server.secret_jobs import queue_reencryption
from server.services import Services
from server.settings import Settings
from server.web import web_route
from server.ws.conversations import conversation_socket
from server.ws.docs import document_socket
from server.ws.projects import project_socket
from server.ws.terminals import terminal_socket
from storage.objects import ObjectStore

log = logging.getLogger(__name__)


def make_broker(settings: Settings) -> Broker:
    if settings.redis_url:
        from collab.redis_broker import RedisBroker

        return RedisBroker(settings.redis_url, settings.instance_id, prefix=settings.redis_prefix)
    return LocalBroker(settings.instance_id)


def routes() -> list[BaseRoute]:
    return [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        metrics_route(),
        # The raw-body upload, with the upload size limit instead of the API's body cap.
        uploads_route(),
        Mount(API_ROOT, app=api_app()),
        WebSocketRoute("/ws/docs/{file_id}", document_socket),
        WebSocketRoute("/ws/projects/{project_id}", project_socket),
        WebSocketRoute("/ws/projects/{project_id}/terminals/{name}", terminal_socket),
        WebSocketRoute("/ws/conversations/{conversation_id}", conversation_socket),
    ]


DOCS_PREFIX = "/ws/docs/"


class App(Starlette):
    """Starlette, except that ``/ws/docs/{file_id}`` sockets skip the middleware stack.

    Every frame a document socket sends otherwise passes through the exception middleware's
    ``send`` wrapper; that socket's handler does its own error handling, so it is called
    directly (with ``app`` and ``path_params`` in the scope, as the router would set them).
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            path: str = scope["path"]
            root = scope.get("root_path", "")
            if root and path.startswith(root):
                path = path[len(root):]
            file_id = path[len(DOCS_PREFIX):]
            if path.startswith(DOCS_PREFIX) and file_id and "/" not in file_id:
                scope["app"] = self
                scope["path_params"] = {"file_id": file_id}
                await document_socket(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


def create_app(settings: Settings) -> Starlette:
    if not settings.database_url:
        raise ValueError("create_app needs settings.database_url (the CLI starts the embedded one)")
    database_url = settings.database_url
    # api_logs, error_logs, performance_metrics: started first, stopped last.
    observability = Observability(
        settings.observability, instance_id=settings.instance_id, release=__version__
    )
    # Secrets at rest: ENCRYPTION_KEYS, or a key kept in DATA_DIR (persistence.crypto).
    keyring = load_keyring(settings.encryption_keys, settings.data_dir)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        db = await Database.connect(
            database_url, min_size=settings.db_pool_min, max_size=settings.db_pool_max,
            on_query=observability.observe_query,
        )
        await observability.start(db)
        broker = make_broker(settings)
        await broker.start()
        oauth = OAuthService(settings.oauth, db, keyring)
        variables = EnvironmentVariables(db, keyring)
        objects = ObjectStore.from_config(settings.storage)
        services = Services(
            settings=settings, db=db, broker=broker, keyring=keyring, oauth=oauth,
            variables=variables, observability=observability, objects=objects,
        )
        app.state.services = services
        # Runs and terminals store binary files they create as objects too.
        services.hubs["objects"] = objects
        # One membership-change path: every open socket re-checked on a role change, on
        # every node, through access:{workspace} on the broker (server/membership.py).
        membership = Membership(db, broker, fallback_s=settings.collab.membership_fallback_s)
        await membership.start()
        services.hubs["membership"] = membership
        # Co-editing: rooms, update log, compaction; stopped first (flush, 1012 to clients).
        documents = DocumentHub(PostgresDocumentStore(db), broker, settings.collab)
        await documents.start()
        services.hubs["documents"] = documents
        projects = ProjectHub(
            broker, PostgresEditorSessions(db), ProjectHubConfig.from_collab(settings.collab)
        )
        await projects.start()
        services.hubs["projects"] = projects
        # The AI chat; an embedded model server starts in the background (see /healthz).
        urls = settings.integrations
        workspace_ai = WorkspaceAI(settings.ai, db, keyring, WorkspaceUrls(
            urls.openai_url, urls.anthropic_url, urls.firecrawl_url, urls.scrape_timeout_s))
        chat = ChatHub.from_config(
            db, broker, settings.ai, settings.data_dir, services.hubs, workspace_ai,
            observability.timings,
        )
        await chat.start()
        services.hubs["chat"] = chat
        # Running code: sandbox or Judge0 runs, owned tasks; cancelled and marked on shutdown.
        executions = ExecutionHub(
            settings.execution, db, services.hubs, variables=variables,
            timings=observability.timings,
        )
        await executions.start()
        services.hubs["executions"] = executions
        # Shared terminals: PTYs in the same sandbox (and uid per project) as the local runs.
        local = executions.backend if isinstance(executions.backend, LocalBackend) else None
        terminals = TerminalHub(settings.execution, db, services.hubs, local, variables)
        await terminals.start()
        services.hubs["terminals"] = terminals
        # Any node serves any terminal: the PTY runs on its owner node, the others relay.
        terminal_router = TerminalRouter(terminals, db, broker)
        await terminal_router.start()
        services.hubs["terminal_router"] = terminal_router
        # Code analyses: requested here, run as jobs (by this process's worker with the
        # chat's provider, or by a worker process with its own).
        analyses = Analyses(db, chat.slot, settings.ai, projects.publish)
        services.hubs["analyses"] = analyses
        # AI edits: the assistant as a peer of the document rooms (stopped before them).
        ai_edits = AIEdits(db, chat.slot, settings.ai, documents, broker, projects.publish,
                           workspace_ai)
        await ai_edits.start()
        services.hubs["ai_edits"] = ai_edits
        # Git: connect/import, pull, push (jobs run by this process's worker with its hubs).
        services.git = build_git_runtime(settings, db, documents, projects, objects, keyring,
                                         oauth)
        # Deleted projects' workdirs and images (projects.cleanup): this process's volumes.
        disks = local.volumes if local is not None else ProjectVolumes(settings.execution)
        # Background jobs (housekeeping, git and analyses included), unless workers run apart.
        worker = (
            build_worker(settings, db,
                         resources=[services.git, objects, analyses, disks],
                         errors=observability.errors)
            if settings.jobs.worker_in_process else None
        )
        if worker is not None:
            await worker.start()
            services.hubs["jobs"] = worker
        if len(keyring.key_ids) > 1:
            # An older key is still configured: move what it encrypted under the newest.
            async with db.service() as conn:
                await queue_reencryption(conn, all_jobs(settings))
        try:
            yield
        finally:
            if worker is not None:
                await worker.stop()
            await terminals.close()
            await terminal_router.close()
            await executions.close()
            await ai_edits.close()
            await documents.stop()
            await chat.close()
            await projects.close()
            await oauth.close()
            await membership.stop()
            await broker.close()
            services.git.git.close()
            await observability.stop()
            await db.close()

    app = App(
        # The page mount catches every path, so it stays last.
        routes=[*routes(), web_route()],
        lifespan=lifespan,
        middleware=[Middleware(RequestObserver, observability=observability)],
        exception_handlers={ApiError: api_error_handler, HTTPException: http_error_handler},
    )
    app.state.settings = settings
    return app
