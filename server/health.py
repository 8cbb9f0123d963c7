"""``GET /healthz``: is the database reachable and migrated, and how is fan-out doing."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from persistence.migrate import migration_status
from server import __version__
from server.services import Services


async def healthz(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    body: dict[str, Any] = {"status": "ok", "version": __version__}
    status = 200
    try:
        async with services.db.acquire(timeout=5) as conn:
            migrations = await migration_status(conn)
        body["database"] = {
            "ok": not migrations.pending and not migrations.unknown,
            "schema_version": migrations.latest,
            "pending": migrations.pending,
        }
        if migrations.pending or migrations.unknown:
            body["status"] = "degraded"
    except Exception as exc:  # reported, not raised: health must always answer
        body["database"] = {"ok": False, "error": type(exc).__name__}
        body["status"] = "unavailable"
        status = 503
    body["broker"] = {
        "kind": type(services.broker).__name__,
        "healthy": services.broker.healthy,
        "instance_id": services.broker.instance_id,
    }
    if not services.broker.healthy and body["status"] == "ok":
        body["status"] = "degraded"
    for name, hub in services.hubs.items():
        report = getattr(hub, "health", None)
        if callable(report):
            body[name] = report()
    return JSONResponse(body, status)
