"""The OpenAPI document tells the truth: every route is in it, and what it marks required
is required (a missing body, or a body missing its required fields, is refused)."""

from __future__ import annotations

import uuid
from typing import Any

from starlette.routing import Mount, Route

from server.api.routing import NAME_PARAMS
from server.app import routes
from tests.api.client import Api


def _value(part: str) -> str:
    if "version" in part:
        return "1"
    if part.strip("{}") in NAME_PARAMS:  # e.g. {provider}: a name, not an id
        return "github"
    return str(uuid.uuid4())


def _concrete(path: str) -> str:
    return "/".join(_value(part) if part.startswith("{") else part for part in path.split("/"))


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in doc["paths"].items()
        for method, operation in item.items()
    ]


async def test_every_api_route_of_the_app_is_documented(api: Api) -> None:
    doc = (await api.call("GET", "/openapi.json")).body
    documented = {(method, path) for method, path, _ in _operations(doc)}
    served: set[tuple[str, str]] = set()
    for route in routes():
        # Routes under /api/v1 outside the API's own table (the mount documents itself).
        if isinstance(route, Route) and route.path.startswith("/api/v1/"):
            for method in route.methods or ():
                if method != "HEAD":
                    served.add((method, route.path.removeprefix("/api/v1")))
        assert not (isinstance(route, Mount) and route.path != "/api/v1"
                    and route.path.startswith("/api")), route.path
    assert served <= documented, served - documented
    assert ("POST", "/conversations/{conversation_id}/messages") in documented


async def test_what_the_document_marks_required_is_required(api: Api) -> None:
    doc = (await api.call("GET", "/openapi.json")).body
    schemas = doc["components"]["schemas"]
    user = await api.sign_up()
    accepted: list[str] = []
    checked = 0
    for method, path, operation in _operations(doc):
        body = operation.get("requestBody")
        if body is None:
            continue
        token = user.token if operation.get("security") else None
        concrete = _concrete(path)
        if body["required"]:
            # No body at all (no Content-Type either).
            reply = await api.call(method, concrete, token=token)
            checked += 1
            if reply.status not in (400, 422):
                accepted.append(f"{method} {path} without a body: {reply.status}")
        schema = body["content"].get("application/json", {}).get("schema", {})
        if "$ref" not in schema:
            continue  # a raw body (a file's bytes, a webhook's signed JSON): no fields
        ref = schema["$ref"].rsplit("/", 1)[-1]
        if schemas[ref].get("required"):
            reply = await api.call(method, concrete, {}, token=token)
            checked += 1
            if reply.status != 422:
                accepted.append(f"{method} {path} with {{}}: {reply.status}")
    assert checked > 15
    assert accepted == []
