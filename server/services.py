"""What the app lifespan owns and the endpoints use: one instance per process."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from billing.events import BillingRuntime
from collab.broker import Broker
from gitsync.sync import GitRuntime
from observability.service import Observability
from persistence.crypto import Keyring
from persistence.db import Database
from persistence.environment import EnvironmentVariables
from server.oauth.service import OAuthService
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
    # Hubs register themselves here by name (documents, projects, chat, terminals...)
    # so endpoints find them without the app module importing every package.
    hubs: dict[str, Any] = field(default_factory=dict)
    # Binary and large files (files.storage_path): a local directory or an S3 bucket.
    objects: ObjectStore | None = None
    # Git: the runner, the jobs' runtime (gitsync.sync.GitRuntime).
    git: GitRuntime | None = None
    # Stripe (billing.events.BillingRuntime); None when STRIPE_SECRET_KEY is unset.
    billing: BillingRuntime | None = None
