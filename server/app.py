"""The ASGI app: builds the services in its lifespan, mounts the endpoints."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import BaseRoute, Route

from collab.broker import Broker, LocalBroker
from persistence.db import Database
from server.errors import ApiError, api_error_handler, http_error_handler
from server.health import healthz
from server.services import Services
from server.settings import Settings

log = logging.getLogger(__name__)


def make_broker(settings: Settings) -> Broker:
    if settings.redis_url:
        from collab.redis_broker import RedisBroker

        return RedisBroker(settings.redis_url, settings.instance_id, prefix=settings.redis_prefix)
    return LocalBroker(settings.instance_id)


def routes() -> list[BaseRoute]:
    return [Route("/healthz", healthz, methods=["GET"])]


def create_app(settings: Settings) -> Starlette:
    if not settings.database_url:
        raise ValueError("create_app needs settings.database_url (the CLI starts the embedded one)")
    database_url = settings.database_url

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        db = await Database.connect(
            database_url, min_size=settings.db_pool_min, max_size=settings.db_pool_max
        )
        broker = make_broker(settings)
        await broker.start()
        services = Services(settings=settings, db=db, broker=broker)
        app.state.services = services
        try:
            yield
        finally:
            await broker.close()
            await db.close()

    app = Starlette(
        routes=routes(),
        lifespan=lifespan,
        exception_handlers={ApiError: api_error_handler, HTTPException: http_error_handler},
    )
    app.state.settings = settings
    return app
