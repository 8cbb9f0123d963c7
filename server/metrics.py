"""``GET /metrics``: every Prometheus metric of this process in the text exposition format."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def metrics_endpoint(request: Request) -> Response:
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


def metrics_route() -> Route:
    return Route("/metrics", metrics_endpoint, methods=["GET"])
