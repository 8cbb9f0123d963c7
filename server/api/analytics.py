"""``POST /analytics/events``: product events from the browser, in batches.

The server decides who and when: the user is the token's, the workspace the one of the
batch's ``project_id`` once the user is found to be a member of it (a ``user_id`` or
``workspace_id`` in the body is ignored), ``created_at`` is the server's clock. Limits: at
most ``MAX_EVENTS`` events and ``MAX_BODY_BYTES`` per request (422 / 413), scalar properties
only, and ``analytics_events_per_minute`` events per user per minute across every server
process (429 with ``Retry-After``; counted in PostgreSQL under a per-user lock). Rows are
inserted as the user, so the insert policy checks the user and workspace once more.

``page_load`` events (category ``performance``) also feed the page-load timings that the
server aggregates into performance_metrics.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from observability.redact import redact_text
from observability.timings import PAGE_LOAD
from persistence import observability as store
from server.api.guards import require_project
from server.api.routing import Ctx, Endpoint
from server.errors import ApiError

MAX_EVENTS = 50
MAX_BODY_BYTES = 64 * 1024
MAX_PROPERTIES = 32
EVENT_NAME = r"^[a-z][a-z0-9_.]{0,63}$"
# Navigation-timing fields of a page_load event that become page.* timings (ms, bounded).
PAGE_LOAD_FIELDS = (
    "ttfb_ms", "dom_content_loaded_ms", "load_ms", "first_contentful_paint_ms",
    "largest_contentful_paint_ms",
)
MAX_PAGE_LOAD_MS = 600_000

Category = Literal["editor", "execution", "ai", "collaboration", "navigation", "performance"]
PropertyName = Annotated[str, StringConstraints(min_length=1, max_length=64)]
PropertyValue = (
    Annotated[str, StringConstraints(max_length=512)]
    | bool
    | int
    | Annotated[float, Field(allow_inf_nan=False)]
    | None
)


class AnalyticsEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str = Field(pattern=EVENT_NAME, description="e.g. file_opened, run_started")
    category: Category
    properties: dict[PropertyName, PropertyValue] = Field(
        default_factory=dict, max_length=MAX_PROPERTIES
    )
    page_url: str | None = Field(None, max_length=2048)
    referrer: str | None = Field(None, max_length=2048)


class AnalyticsBatch(BaseModel):
    # Unknown fields (user_id, workspace_id, created_at...) are ignored: the server sets them.
    model_config = ConfigDict(extra="ignore")
    session_id: str | None = Field(None, max_length=128)
    project_id: uuid.UUID | None = Field(
        None, description="the project the events happened in (sets the workspace)"
    )
    events: list[AnalyticsEvent] = Field(min_length=1, max_length=MAX_EVENTS)


class Accepted(BaseModel):
    accepted: int


def _row(event: AnalyticsEvent, project_id: uuid.UUID | None) -> dict[str, Any]:
    properties: dict[str, Any] = {
        key: redact_text(value) if isinstance(value, str) else value
        for key, value in event.properties.items()
    }
    if project_id is not None:
        properties["project_id"] = str(project_id)
    return {
        "name": event.name,
        "category": event.category,
        "properties": properties,
        "page_url": redact_text(event.page_url) if event.page_url else None,
        "referrer": redact_text(event.referrer) if event.referrer else None,
    }


def _observe_page_loads(ctx: Ctx, events: list[AnalyticsEvent]) -> None:
    observability = ctx.services.observability
    if observability is None:
        return
    for event in events:
        if event.name != "page_load" or event.category != "performance":
            continue
        for field in PAGE_LOAD_FIELDS:
            value = event.properties.get(field)
            if isinstance(value, int | float) and not isinstance(value, bool) \
                    and 0 <= value <= MAX_PAGE_LOAD_MS:
                observability.timings.observe(
                    PAGE_LOAD, f"page.{field.removesuffix('_ms')}", float(value)
                )


async def post_events(ctx: Ctx) -> dict[str, Any]:
    batch: AnalyticsBatch = ctx.body
    workspace_id: uuid.UUID | None = None
    if batch.project_id is not None:
        access = await require_project(ctx, batch.project_id, "viewer")
        workspace_id = access.workspace_id
    rows = [_row(event, batch.project_id) for event in batch.events]
    limit = ctx.services.settings.observability.analytics_events_per_minute
    async with ctx.db.as_user(ctx.user_id) as conn:
        recent = await store.recent_analytics_count(conn, ctx.user_uuid)
        if recent + len(rows) > limit:
            raise ApiError(
                429, "rate_limited",
                f"at most {limit} analytics events per minute", headers={"Retry-After": "60"},
            )
        await store.insert_analytics_events(
            conn, ctx.user_uuid, workspace_id, batch.session_id, rows
        )
    _observe_page_loads(ctx, batch.events)
    return {"accepted": len(rows)}


ENDPOINTS = [
    Endpoint("POST", "/analytics/events", post_events, "Record a batch of product events",
             "analytics", body=AnalyticsBatch, response=Accepted, status=202,
             max_body_bytes=MAX_BODY_BYTES, errors=(404, 413, 422, 429)),
]
