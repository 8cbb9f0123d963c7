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
from billing.events import BillingRuntime
from broker.interface import Broker
from broker.local import LocalBroker
from collab.hub import DocumentHub
from collab.project_hub import ProjectHub, ProjectHubConfig
from execution.local import LocalBackend
from execution.runner import ExecutionHub
from execution.terminal_relay import TerminalRouter
from execution.terminals import TerminalHub
from execution.volumes import ProjectVolumes
from observability.service import Observability
from persistence.crypto import Keyring, load_keyring
from persistence.db import Database
from persistence.documents import PostgresDocumentStore
from persistence.editor_sessions import PostgresEditorSessions
from persistence.environment import EnvironmentVariables
from server import __version__
from server.access_batch import FileAccessBatch
from server.api import API_ROOT, api_app
from server.api.uploads import uploads_route
from server.background import all_jobs, build_worker
from server.errors import ApiError, api_error_handler, http_error_handler
from server.git_wiring import build_git_runtime
from server.health import healthz, readyz
from server.lifecycle import Lifecycle
from server.membership import Membership
from server.metrics import metrics_route
from server.oauth.service import OAuthService
from server.observe import RequestObserver
from server.preview_wiring import start_previews
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
        from broker.redis_broker import RedisBroker

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


async def _start_hubs(
    settings: Settings, services: Services, parts: Lifecycle, keyring: Keyring
) -> None:
    """Build and start every hub; each is on ``services`` once it runs."""
    db, broker, objects = services.db, services.broker, services.objects
    observability = services.observability
    assert observability is not None and objects is not None
    # One membership-change path: every open socket re-checked on a role change, on
    # every node, through access:{workspace} on the broker (server/membership.py).
    membership = Membership(db, broker, fallback_s=settings.collab.membership_fallback_s)
    await parts.start("membership", membership.start, membership.stop)
    services.membership = membership
    file_checks = FileAccessBatch(db)
    parts.on_stop("file-checks", file_checks.stop)
    services.file_checks = file_checks
    # Co-editing: rooms, update log, compaction; stopped after the parts that use it
    # (flush, 1012 to clients).
    documents = DocumentHub(PostgresDocumentStore(db), broker, settings.collab)
    await parts.start("documents", documents.start, documents.stop)
    services.documents = documents
    projects = ProjectHub(
        broker, PostgresEditorSessions(db), ProjectHubConfig.from_collab(settings.collab)
    )
    await parts.start("projects", projects.start, projects.close)
    services.projects = projects
    # Running code: sandbox or Judge0 runs, owned tasks; cancelled and marked on shutdown.
    executions = ExecutionHub(
        settings.execution, db, documents=documents, projects=projects, objects=objects,
        variables=services.variables, timings=observability.timings,
    )
    # The AI chat; an embedded model server starts in the background (see /healthz).
    urls = settings.integrations
    workspace_ai = WorkspaceAI(settings.ai, db, keyring, WorkspaceUrls(
        urls.openai_url, urls.anthropic_url, urls.firecrawl_url, urls.scrape_timeout_s))
    chat = ChatHub.from_config(
        db, broker, settings.ai, settings.data_dir, workspace_ai, observability.timings,
        documents=documents, executions=executions,
    )
    await parts.start("chat", chat.start, chat.close)
    services.chat = chat
    await parts.start("executions", executions.start, executions.close)
    services.executions = executions
    # Shared terminals: PTYs in the same sandbox (and uid per project) as the local runs.
    local = executions.backend if isinstance(executions.backend, LocalBackend) else None
    terminals = TerminalHub(
        settings.execution, db, local, services.variables,
        documents=documents, projects=projects, objects=objects,
    )
    # Any node serves any terminal: the PTY runs on its owner node, the others relay.
    # Started before the hub so it stops after it: the hub's last messages (each
    # terminal's close) still reach the relaying nodes.
    terminal_router = TerminalRouter(terminals, db, broker)
    await parts.start("terminal_router", terminal_router.start, terminal_router.close)
    await parts.start("terminals", terminals.start, terminals.close)
    services.terminals = terminals
    services.terminal_router = terminal_router
    # Previews and deployments: the preview origin (a second listener of this process)
    # and the runtime the deployment jobs use (docs/deployments.md).
    previews = await start_previews(settings, db, local, projects.publish, keyring,
                                    documents=documents, objects=objects)
    if previews is not None:
        parts.on_stop("previews", previews.close)
        services.previews = previews
    # Code analyses: requested here, run as jobs (by this process's worker with the
    # chat's provider, or by a worker process with its own).
    analyses = Analyses(db, chat.slot, settings.ai, projects.publish)
    services.analyses = analyses
    # AI edits: the assistant as a peer of the document rooms (stopped before them).
    ai_edits = AIEdits(db, chat.slot, settings.ai, documents, broker, projects.publish,
                       workspace_ai)
    await parts.start("ai_edits", ai_edits.start, ai_edits.close)
    services.ai_edits = ai_edits
    # Git: connect/import, pull, push (jobs run by this process's worker with its hubs).
    git = build_git_runtime(settings, db, documents, projects, objects, keyring, services.oauth)
    parts.on_stop("git", git.git.close)
    services.git = git
    # Deleted projects' workdirs and images (projects.cleanup): this process's volumes.
    disks = local.volumes if local is not None else ProjectVolumes(settings.execution)
    # Stripe: checkout and portal requests, and the jobs that process its webhooks.
    billing = BillingRuntime.from_config(settings.billing)
    if billing is not None:
        parts.on_stop("billing", billing.close)
    services.billing = billing
    # Background jobs (housekeeping, git, analyses, billing included), unless workers run apart.
    if settings.jobs.worker_in_process:
        deployer = [previews.deployer] if previews is not None else []
        worker = build_worker(settings, db,
                              resources=[git, objects, analyses, disks, billing, *deployer],
                              errors=observability.errors)
        await parts.start("jobs", worker.start, worker.stop)
        services.jobs = worker


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
        # Every part registers its stop once started: stopped last-started first, each stop
        # on its own (server/lifecycle.py). The order below is the start order.
        parts = Lifecycle()
        parts.on_stop("database", db.close)
        parts.on_stop("observability", observability.stop)
        parts.on_stop("broker", broker.close)
        parts.on_stop("oauth", oauth.close)
        try:
            await _start_hubs(settings, services, parts, keyring)
            if settings.picows_docs_port is not None:
                # Stopped before the hubs: the hub's stop closes its sockets (1012).
                from server.ws.picows_docs import PicowsDocuments

                picows = PicowsDocuments(services, settings.host, settings.picows_docs_port)
                await parts.start("picows_docs", picows.start, picows.stop)
                app.state.picows_docs = picows
            if len(keyring.key_ids) > 1:
                # An older key is still configured: move what it encrypted under the newest.
                async with db.service() as conn:
                    await queue_reencryption(conn, all_jobs(settings))
        except BaseException:
            await parts.stop_all()
            raise
        try:
            yield
        finally:
            await parts.stop_all()

    app = App(
        # The page mount catches every path, so it stays last.
        routes=[*routes(), web_route()],
        lifespan=lifespan,
        middleware=[Middleware(RequestObserver, observability=observability)],
        exception_handlers={ApiError: api_error_handler, HTTPException: http_error_handler},
    )
    app.state.settings = settings
    return app
