"""The OpenAPI 3.1 document, generated from the endpoint table and its pydantic models."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from server.api.routing import INT_PARAMS, NAME_PARAMS, NAME_PATTERN, Endpoint, path_params

REF = "#/components/schemas/{model}"
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}},
        }
    },
}
ERROR_TEXT = {
    400: "Malformed request",
    401: "Missing, expired or invalid token",
    402: "Over the plan limit of the workspace's owner (error.limit, error.used, error.plan)",
    403: "Not allowed for this role",
    404: "No such object (or not visible to the caller)",
    405: "Method not allowed",
    409: "Conflict with existing state",
    413: "Request body too large",
    415: "Not a text document",
    422: "Validation failed",
    429: "Too many attempts",
    502: "An upstream provider failed, or could not be reached",
    503: "A part this needs is unavailable here (e.g. no sandbox); the message says why",
}


def _ref(model: type[BaseModel]) -> dict[str, Any]:
    return {"$ref": REF.format(model=model.__name__)}


def _parameters(endpoint: Endpoint, defs: dict[str, Any]) -> list[dict[str, Any]]:
    params: list[dict[str, Any]] = []
    for name in path_params(endpoint.path):
        schema: dict[str, Any] = (
            {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}
            if name in INT_PARAMS
            else {"type": "string", "pattern": NAME_PATTERN.pattern}
            if name in NAME_PARAMS
            else {"type": "string", "format": "uuid"}
        )
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
    if endpoint.query is not None:
        schema = endpoint.query.model_json_schema(ref_template=REF)
        required = set(schema.get("required", []))
        for name, prop in schema.get("properties", {}).items():
            params.append(
                {"name": name, "in": "query", "required": name in required, "schema": prop}
            )
        defs.update(schema.get("$defs", {}))
    return params


def _responses(endpoint: Endpoint) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    if endpoint.status == 204:
        responses["204"] = {"description": "Done"}
    else:
        content: dict[str, Any] = {"type": "object"}
        if endpoint.response is not None:
            content = _ref(endpoint.response)
            if endpoint.paged:
                content = {
                    "type": "object",
                    "required": ["items", "next_cursor"],
                    "properties": {
                        "items": {"type": "array", "items": content},
                        "next_cursor": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                    },
                }
        if endpoint.raw_response is not None:
            media = {endpoint.raw_response: {"schema": {"type": "string", "format": "binary"}}}
        else:
            media = {"application/json": {"schema": content}}
        responses[str(endpoint.status)] = {"description": endpoint.summary, "content": media}
    if endpoint.sse:
        responses["200"] = {
            "description": "With Accept: text/event-stream: the same events as Server-Sent "
                           "Events (event: <type>, data: <json>)",
            "content": {"text/event-stream": {"schema": {"type": "string"}}},
        }
    errors = set(endpoint.errors) | {400, 413, 422}
    if endpoint.auth:
        errors |= {401}
    if path_params(endpoint.path):
        errors |= {404}
    for status in sorted(errors):
        responses[str(status)] = {
            "description": ERROR_TEXT[status],
            "content": {
                "application/json": {"schema": {"$ref": REF.format(model="Error")}}
            },
        }
    return responses


def openapi_document(endpoints: list[Endpoint], *, title: str, version: str) -> dict[str, Any]:
    models: set[type[BaseModel]] = set()
    for endpoint in endpoints:
        for model in (endpoint.body, endpoint.response):
            if model is not None:
                models.add(model)
    ordered = sorted(models, key=lambda m: m.__name__)
    _, top = models_json_schema(
        [(m, "validation") for m in ordered], ref_template=REF
    )
    schemas: dict[str, Any] = dict(top.get("$defs", {}))
    schemas["Error"] = ERROR_SCHEMA
    paths: dict[str, Any] = {}
    for endpoint in endpoints:
        operation: dict[str, Any] = {
            "operationId": endpoint.operation_id,
            "summary": endpoint.summary,
            "tags": [endpoint.tag],
            "parameters": _parameters(endpoint, schemas),
            "responses": _responses(endpoint),
        }
        if endpoint.auth:
            operation["security"] = [{"bearer": []}]
        if endpoint.raw_body is not None:
            operation["requestBody"] = {
                "required": endpoint.body_required,
                "content": {endpoint.raw_body: {"schema": {"type": "string",
                                                            "format": "binary"}}},
            }
        if endpoint.body is not None:
            operation["requestBody"] = {
                "required": endpoint.body_required,
                "content": {"application/json": {"schema": _ref(endpoint.body)}},
            }
        paths.setdefault(endpoint.path, {})[endpoint.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "servers": [{"url": "/api/v1"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }
