"""``GET /healthz`` says what works; ``GET /readyz`` says whether to send this process traffic.

/healthz (people, dashboards): ``status`` is ``ok``; ``degraded`` when a part has failed or
is unavailable (``failing`` names them: a pending migration, a broker that lost Redis, the
sandbox without bubblewrap, a chat model that failed); ``unavailable`` with a 503 when the
database does not answer. Parts still on their way (the embedded model ``installing`` or
``starting``) are listed in ``starting`` and do not degrade the status.

/readyz (load balancers, container health checks): 200 when the database answers and
every migration this code knows is applied; otherwise 503 with the reasons. Optional parts
(chat, code execution, Redis fan-out) do not make a process unready: it still serves
editing, and taking every node out for a shared outage would serve nothing at all.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from persistence.migrate import migration_status
from server import __version__
from server.services import Services

FAILED_STATES = frozenset({"failed", "unavailable"})
STARTING_STATES = frozenset({"installing", "starting"})
DB_TIMEOUT_S = 5.0
READY_DB_TIMEOUT_S = 2.0


def part_failing(report: dict[str, Any]) -> bool:
    return report.get("ok") is False or report.get("state") in FAILED_STATES


async def healthz(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    body: dict[str, Any] = {"status": "ok", "version": __version__}
    failing: list[str] = []
    starting: list[str] = []
    status = 200
    try:
        async with asyncio.timeout(DB_TIMEOUT_S), services.db.acquire() as conn:
            migrations = await migration_status(conn)
        body["database"] = {
            "ok": not migrations.pending and not migrations.unknown,
            "schema_version": migrations.latest,
            "pending": migrations.pending,
        }
        if migrations.pending or migrations.unknown:
            failing.append("database")
    except Exception as exc:  # reported, not raised: health must always answer
        body["database"] = {"ok": False, "error": type(exc).__name__}
        failing.append("database")
        status = 503
    body["broker"] = {
        "kind": type(services.broker).__name__,
        "healthy": services.broker.healthy,
        "instance_id": services.broker.instance_id,
    }
    if not services.broker.healthy:
        failing.append("broker")
    for name, hub in services.health_parts().items():
        part = body[name] = hub.health()
        if part_failing(part):
            failing.append(name)
        elif part.get("state") in STARTING_STATES:
            starting.append(name)
    if status == 503:
        body["status"] = "unavailable"
    elif failing:
        body["status"] = "degraded"
    body["failing"] = failing
    body["starting"] = starting
    return JSONResponse(body, status)


async def readyz(request: Request) -> JSONResponse:
    services: Services = request.app.state.services
    reasons: list[str] = []
    try:
        async with asyncio.timeout(READY_DB_TIMEOUT_S), services.db.acquire() as conn:
            migrations = await migration_status(conn)
        if migrations.pending:
            reasons.append("migrations pending: " + ", ".join(migrations.pending))
    except Exception as exc:  # any failure to answer means: not ready
        reasons.append(f"database unreachable ({type(exc).__name__})")
    if reasons:
        return JSONResponse({"ready": False, "reasons": reasons}, 503)
    return JSONResponse({"ready": True})
