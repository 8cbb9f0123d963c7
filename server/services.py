"""What the app lifespan owns and the endpoints use: one instance per process.

Every hub is a typed field (None until the lifespan has started it, or when it is not
part of this process), so mypy and the import graph see who uses what; packages that
need another's behaviour are given a narrow protocol (collab.ports, ai.project_tools,
gitsync.live) rather than this object.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from ai.analysis import Analyses
from ai.chat import ChatHub
from ai.edits import AIEdits
from billing.events import BillingRuntime
from broker.interface import Broker
from collab.hub import DocumentHub
from collab.project_hub import ProjectHub
from execution.runner import ExecutionHub
from execution.terminal_relay import TerminalRouter
from execution.terminals import TerminalHub
from gitsync.sync import GitRuntime
from jobs.worker import Worker
from observability.service import Observability
from persistence.crypto import Keyring
from persistence.db import Database
from persistence.environment import EnvironmentVariables
from server.access_batch import FileAccessBatch
from server.membership import Membership
from server.oauth.service import OAuthService
from server.preview_wiring import Previews
from server.settings import Settings
from storage.objects import ObjectStore


@dataclass
class Services:
    settings: Settings
    db: Database
    broker: Broker
    # Secrets at rest (persistence.crypto), provider sign-in and tokens, project variables.
    keyring: Keyring
    oauth: OAuthService
    variables: EnvironmentVariables
    observability: Observability | None = None
    # Binary and large files (files.storage_path): a local directory or an S3 bucket.
    objects: ObjectStore | None = None
    # Git: the runner, the jobs' runtime (gitsync.sync.GitRuntime).
    git: GitRuntime | None = None
    # Stripe (billing.events.BillingRuntime); None when STRIPE_SECRET_KEY is unset.
    billing: BillingRuntime | None = None
    # The hubs (docs/hubs.md).
    documents: DocumentHub | None = None
    projects: ProjectHub | None = None
    chat: ChatHub | None = None
    executions: ExecutionHub | None = None
    terminals: TerminalHub | None = None
    # The terminal socket's entry: the local hub, or a relay to the node running the shell.
    terminal_router: TerminalRouter | None = None
    # Every open socket's role, followed across nodes (server/membership.py).
    membership: Membership | None = None
    # Document sockets' access checks, one query per group of sockets (server/access_batch.py).
    file_checks: FileAccessBatch | None = None
    analyses: Analyses | None = None
    ai_edits: AIEdits | None = None
    # Previews and deployments (docs/deployments.md): None without the local sandbox.
    previews: Previews | None = None
    # This process's background-jobs worker (JOBS_WORKER_IN_PROCESS).
    jobs: Worker | None = None

    def health_parts(self) -> dict[str, ReportsHealth]:
        """The parts that report their own health on /healthz, by name."""
        parts: dict[str, ReportsHealth | None] = {
            "projects": self.projects, "chat": self.chat, "executions": self.executions,
            "terminals": self.terminals, "terminal_router": self.terminal_router,
            "membership": self.membership, "ai_edits": self.ai_edits, "jobs": self.jobs,
            "previews": self.previews,
        }
        return {name: part for name, part in parts.items() if part is not None}


class ReportsHealth(Protocol):
    def health(self) -> dict[str, Any]: ...
