"""The operator page's reads: time series (one point per ``step_s``) of requests, errors,
latency, the job queue, AI and execution usage.

Who sees what: an admin or owner of a workspace sees that workspace (its api_logs, the
errors of its projects, its usage); a service operator (a row in ``service_operators``,
granted with ``python -m server operators grant EMAIL``) also sees the whole service, with
the server's own aggregates (performance_metrics) and the job queue. Every query runs as the
user under RLS (0087); the checks here only turn "sees nothing" into a clear 403/404.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import asyncpg
from pydantic import BaseModel, ConfigDict, Field, model_validator

from persistence import observability as store
from persistence import operator_stats as stats
from server.api.guards import require_workspace
from server.api.routing import Ctx, Endpoint
from server.errors import forbidden

STEPS = (1, 5, 10, 30, 60)
MAX_POINTS = 1440


class WindowQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")
    workspace_id: uuid.UUID | None = Field(
        None, description="a workspace you administer; omitted: the whole service (operators)"
    )
    minutes: int = Field(60, ge=1, le=1440, description="how far back")
    step_s: int = Field(
        60, description="seconds per point: 1, 5, 10, 30 or 60 (at most 1440 points); the "
        "server's own aggregates arrive once per METRICS_PERIOD_S"
    )

    @model_validator(mode="after")
    def _bounded(self) -> WindowQuery:
        if self.step_s not in STEPS:
            raise ValueError(f"step_s is one of {', '.join(map(str, STEPS))}")
        if self.minutes * 60 // self.step_s > MAX_POINTS:
            raise ValueError(f"at most {MAX_POINTS} points: a longer step or a shorter window")
        return self


class WatchedWorkspace(BaseModel):
    id: uuid.UUID
    name: str
    role: str


class Scopes(BaseModel):
    operator: bool
    workspaces: list[WatchedWorkspace]


class Series(BaseModel):
    name: str
    values: list[float | None]


class Panel(BaseModel):
    id: str
    title: str
    unit: str
    series: list[Series]


class OperatorSeries(BaseModel):
    scope: Literal["service", "workspace"]
    workspace_id: uuid.UUID | None
    step_s: int
    times: list[int] = Field(description="start of each point's bucket, Unix seconds (UTC)")
    panels: list[Panel]


# Server-computed series plotted for the service scope: (panel, title, unit, [(name, metric)]).
SERVICE_PANELS: list[tuple[str, str, str, list[tuple[str, str]]]] = [
    ("database", "Database query time", "ms",
     [("p50", "db.query.p50"), ("p95", "db.query.p95"), ("p99", "db.query.p99")]),
    ("ai_latency", "AI time to first token", "ms",
     [("p50", "ai.time_to_first_token.p50"), ("p95", "ai.time_to_first_token.p95")]),
    ("ai_speed", "AI output speed", "tokens/s", [("p50", "ai.tokens_per_second.p50")]),
    ("execution_time", "Execution wall time", "ms",
     [("p50", "execution.wall_time.p50"), ("p95", "execution.wall_time.p95")]),
    ("page_load", "IDE page load", "ms",
     [("p50", "page.load.p50"), ("p95", "page.load.p95")]),
]
LATENCY = [("p50", "http.server.duration.p50"), ("p95", "http.server.duration.p95"),
           ("p99", "http.server.duration.p99")]


class Axis:
    """The buckets of the window (``step_s`` long, aligned to the epoch as ``date_bin`` does)
    and a way to lay sparse rows on them."""

    def __init__(self, now: datetime, minutes: int, step_s: int) -> None:
        last = int(now.timestamp()) // step_s * step_s
        count = minutes * 60 // step_s
        self.step = timedelta(seconds=step_s)
        self.epochs = [last - step_s * i for i in reversed(range(count))]
        self.times = [datetime.fromtimestamp(t, UTC) for t in self.epochs]
        self.start = self.times[0]

    @property
    def per(self) -> str:
        seconds = int(self.step.total_seconds())
        return "per min" if seconds == 60 else f"per {seconds} s"

    def lay(
        self, rows: Iterable[asyncpg.Record], column: str, *, missing: float | None = 0.0,
    ) -> list[float | None]:
        by_bucket = {row["bucket"]: row[column] for row in rows}
        out: list[float | None] = []
        for t in self.times:
            value = by_bucket.get(t)
            out.append(missing if value is None else round(float(value), 3))
        return out


def panel(id: str, title: str, unit: str, **series: list[float | None]) -> Panel:
    return Panel(id=id, title=title, unit=unit,
                 series=[Series(name=name, values=values) for name, values in series.items()])


async def scopes(ctx: Ctx) -> dict[str, Any]:
    async with ctx.db.as_user(ctx.user_id) as conn:
        operator = await store.is_operator(conn)
        workspaces = await stats.admin_workspaces(conn, ctx.user_uuid)
    return {"operator": operator, "workspaces": [dict(w) for w in workspaces]}


async def series(ctx: Ctx) -> dict[str, Any]:
    query: WindowQuery = ctx.query
    workspace_id = query.workspace_id
    if workspace_id is not None:
        await require_workspace(ctx, workspace_id, "admin")
    axis = Axis(datetime.now(UTC), query.minutes, query.step_s)
    async with ctx.db.as_user(ctx.user_id) as conn:
        if workspace_id is None:
            if not await store.is_operator(conn):
                raise forbidden("the whole service is for service operators; name a workspace",
                                "not_operator")
            panels = await _service_panels(conn, axis)
        else:
            panels = await _workspace_panels(conn, axis, workspace_id)
        usage = await stats.usage(conn, axis.start, axis.step, workspace_id)
    panels += [
        panel("ai_usage", "AI tokens", f"tokens {axis.per}",
              tokens=axis.lay(usage, "ai_tokens")),
        panel("executions", "Code runs", f"runs {axis.per}", runs=axis.lay(usage, "executions")),
    ]
    return {
        "scope": "service" if workspace_id is None else "workspace",
        "workspace_id": workspace_id,
        "step_s": query.step_s,
        "times": axis.epochs,
        "panels": panels,
    }


async def _workspace_panels(
    conn: asyncpg.Connection, axis: Axis, workspace_id: uuid.UUID
) -> list[Panel]:
    requests = await stats.workspace_requests(conn, axis.start, axis.step, workspace_id)
    errors = await stats.errors(conn, axis.start, axis.step, workspace_id)
    return [
        panel("requests", "Requests and errors", axis.per,
              requests=axis.lay(requests, "requests"),
              server_errors=axis.lay(requests, "server_errors"),
              errors=axis.lay(errors, "errors")),
        panel("latency", "REST latency", "ms",
              **{p: axis.lay(requests, p, missing=None) for p in ("p50", "p95", "p99")}),
    ]


async def _service_panels(conn: asyncpg.Connection, axis: Axis) -> list[Panel]:
    names = [metric for *_, pairs in SERVICE_PANELS for _, metric in pairs]
    names += [metric for _, metric in LATENCY]
    rows = await stats.performance(conn, axis.start, axis.step, names)
    by_metric: dict[str, list[asyncpg.Record]] = {}
    for row in rows:
        by_metric.setdefault(row["name"], []).append(row)
    server_errors = await stats.service_server_errors(conn, axis.start, axis.step)
    errors = await stats.errors(conn, axis.start, axis.step, None)
    jobs = await stats.jobs(conn, axis.start, axis.step)
    panels = [
        panel("requests", "Requests and errors", axis.per,
              requests=axis.lay(by_metric.get("http.server.duration.p50", []), "samples"),
              server_errors=axis.lay(server_errors, "server_errors"),
              errors=axis.lay(errors, "errors")),
        panel("latency", "REST latency", "ms",
              **{name: axis.lay(by_metric.get(metric, []), "value", missing=None)
                 for name, metric in LATENCY}),
        panel("jobs", "Job queue", "jobs",
              queued=axis.lay(jobs, "queued"), failed=axis.lay(jobs, "failed")),
    ]
    for id, title, unit, pairs in SERVICE_PANELS:
        panels.append(panel(id, title, unit, **{
            name: axis.lay(by_metric.get(metric, []), "value", missing=None)
            for name, metric in pairs
        }))
    return panels


ENDPOINTS = [
    Endpoint("GET", "/operator/scopes", scopes,
             "What the caller may watch: operator or not, and the workspaces they administer",
             "operator", response=Scopes),
    Endpoint("GET", "/operator/series", series,
             "Time series of a workspace (admins) or the whole service (operators)",
             "operator", query=WindowQuery, response=OperatorSeries, errors=(403, 404, 422)),
]
