"""The REST endpoint table and the one wrapper every handler runs in.

An ``Endpoint`` names its method, path, body/query/response models and whether it needs a
token; the wrapper authenticates, parses and validates, calls the handler with a ``Ctx``,
and turns every failure into ``{"error": {"code", "message"}}`` with the right status.
The same table generates the OpenAPI document (``server.api.openapi``).
"""

from __future__ import annotations

import functools
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import to_jsonable_python
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from billing import limits as billing_limits
from persistence.db import Database
from server.auth.tokens import Principal, TokenError, verify_access_token
from server.errors import ApiError, error_body, payment_required, unauthorized
from server.middleware import BodyTooLarge
from server.observe import request_facts
from server.services import Services

log = logging.getLogger(__name__)

Handler = Callable[["Ctx"], Awaitable[Any]]
RequestHandler = Callable[[Request], Awaitable[Response]]

# Every method reaches the dispatcher, which answers 405 in the API's error shape.
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

# Path parameters by name: ids are UUIDs, version numbers integers, names (checked by
# their handler) strings.
INT_PARAMS = frozenset({"version_number"})
NAME_PARAMS = frozenset({"provider"})
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


@dataclass
class Ctx:
    request: Request
    services: Services
    principal: Principal | None
    params: dict[str, Any]
    body: Any = None
    query: Any = None

    @property
    def db(self) -> Database:
        return self.services.db

    @property
    def user_id(self) -> str:
        if self.principal is None:
            raise unauthorized()
        return self.principal.user_id

    @property
    def user_uuid(self) -> uuid.UUID:
        return uuid.UUID(self.user_id)

    def name(self, param: str) -> str:
        value = self.params[param]
        assert isinstance(value, str)
        return value

    def uuid(self, name: str) -> uuid.UUID:
        value = self.params[name]
        assert isinstance(value, uuid.UUID)
        return value


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    tag: str
    body: type[BaseModel] | None = None
    # False only where a request without a body means something (the model's defaults).
    body_required: bool = True
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    paged: bool = False
    status: int = 200
    auth: bool = True
    errors: tuple[int, ...] = field(default=())
    # The media type of a body the handler reads itself (not parsed as JSON by the wrapper).
    raw_body: str | None = None
    # Served by a route of its own, outside the API's MAX_REQUEST_BYTES cap (uploads).
    own_route: bool = False
    # The media type of a successful answer that is not JSON (a file's bytes).
    raw_response: str | None = None
    # Also answers 200 text/event-stream when asked to (``Accept``).
    sse: bool = False
    # A tighter body limit than the app-wide MAX_REQUEST_BYTES (413 past it).
    max_body_bytes: int | None = None

    @property
    def operation_id(self) -> str:
        return self.handler.__name__


def path_params(path: str) -> list[str]:
    names: list[str] = []
    for part in path.split("/"):
        if part.startswith("{") and part.endswith("}"):
            names.append(part[1:-1])
    return names


def _parse_params(raw: dict[str, Any]) -> dict[str, Any]:
    parsed: dict[str, Any] = {}
    for name, value in raw.items():
        if name in NAME_PARAMS:
            if not NAME_PATTERN.match(str(value)):
                raise ApiError(404, "not_found", f"no such {name}")
            parsed[name] = str(value)
        elif name in INT_PARAMS:
            try:
                number = int(str(value))
            except ValueError:
                raise ApiError(404, "not_found", f"no such {name}") from None
            if not 0 < number < 2**31:
                raise ApiError(404, "not_found", f"no such {name}")
            parsed[name] = number
        else:
            try:
                parsed[name] = uuid.UUID(str(value))
            except ValueError:
                raise ApiError(404, "not_found", f"no such {name.removesuffix('_id')}") from None
    return parsed


def _authenticate(request: Request, services: Services) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized()
    settings = services.settings
    try:
        principal = verify_access_token(
            settings.jwt_secret, token.strip(), audience=settings.jwt_audience
        )
    except TokenError as exc:
        raise unauthorized(exc.message, exc.code) from exc
    if principal.role != "authenticated":
        raise unauthorized("token role is not authenticated", "invalid_token")
    return principal


MAX_JSON_DEPTH = 32


def _too_deep(data: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """True when lists/objects nest deeper than ``limit`` (checked without recursion)."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth > limit:
                return True
            children = value.values() if isinstance(value, dict) else value
            stack.extend((child, depth + 1) for child in children)
    return False


def _validation_message(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{where}: {error['msg']}")
    return "; ".join(parts)


async def _read_body(request: Request, limit: int | None) -> bytes:
    if limit is None:
        return await request.body()
    too_large = ApiError(413, "payload_too_large", f"request body over {limit} bytes")
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > limit:
        raise too_large
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


async def _read_json(
    request: Request, model: type[BaseModel], required: bool, limit: int | None = None
) -> BaseModel:
    raw = await _read_body(request, limit)
    if not raw.strip():
        if required:
            raise ApiError(422, "validation_error", "body: a JSON request body is required")
        data: Any = {}
    else:
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "invalid_json", "request body is not valid JSON") from None
        except RecursionError:
            raise ApiError(400, "invalid_json", "request body is nested too deeply") from None
        if _too_deep(data):
            raise ApiError(400, "invalid_json", "request body is nested too deeply")
        try:
            # Lone surrogates parse as JSON but cannot be stored as UTF-8.
            json.dumps(data, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            raise ApiError(400, "invalid_json", "request body is not valid UTF-8") from None
        except RecursionError:
            raise ApiError(400, "invalid_json", "request body is nested too deeply") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ApiError(422, "validation_error", _validation_message(exc)) from None


def _read_query(request: Request, model: type[BaseModel]) -> BaseModel:
    try:
        return model.model_validate(dict(request.query_params))
    except ValidationError as exc:
        raise ApiError(422, "validation_error", _validation_message(exc)) from None


def database_error(exc: asyncpg.PostgresError) -> ApiError | None:
    """The API error a database refusal means, or None for a real fault."""
    reached = billing_limits.from_database(exc)
    if reached is not None:
        return plan_limit_error(reached)
    if isinstance(exc, asyncpg.InsufficientPrivilegeError):
        return ApiError(403, "forbidden", "not allowed")
    if isinstance(exc, asyncpg.UniqueViolationError):
        return ApiError(409, "conflict", "already exists")
    if isinstance(exc, asyncpg.ForeignKeyViolationError):
        return ApiError(422, "invalid_reference", "a referenced object does not exist")
    if isinstance(exc, asyncpg.CheckViolationError | asyncpg.NotNullViolationError):
        return ApiError(422, "validation_error", "a value is not allowed")
    if isinstance(exc, asyncpg.DataError):
        return ApiError(422, "validation_error", "a value cannot be stored")
    if isinstance(exc, asyncpg.ProgramLimitExceededError):
        # e.g. a huge JSON value in a GIN-indexed column, or JSON nested too deeply.
        return ApiError(422, "value_too_large", "a value is too large or too deeply nested")
    return None


def plan_limit_error(reached: billing_limits.PlanLimitReached) -> ApiError:
    return payment_required(reached.resource, reached.limit, reached.used, reached.plan,
                            reached.message)


_json_adapter: TypeAdapter[Any] = TypeAdapter(Any)


@functools.cache
def _adapter(model: type[BaseModel], many: bool) -> TypeAdapter[Any]:
    return TypeAdapter(list[model] if many else model)  # type: ignore[valid-type]


def render(result: Any, endpoint: Endpoint) -> Response:
    if isinstance(result, Response):
        return result
    if result is None:
        return Response(status_code=204)
    if endpoint.response is not None and isinstance(result, dict):
        # Validated and written as JSON in one pass by pydantic-core (a page of 50 files
        # through model_validate, model_dump and json.dumps cost three times as much).
        adapter = _adapter(endpoint.response, endpoint.paged)
        if endpoint.paged:
            items = adapter.dump_json(adapter.validate_python(result["items"]))
            cursor = json.dumps(result["next_cursor"], ensure_ascii=False).encode()
            body = b'{"items":' + items + b',"next_cursor":' + cursor + b"}"
        else:
            body = adapter.dump_json(adapter.validate_python(result))
        return Response(body, endpoint.status, media_type="application/json")
    return JSONResponse(to_jsonable_python(result), endpoint.status)


def _error_response(exc: ApiError) -> JSONResponse:
    return JSONResponse(error_body(exc.code, exc.message, **exc.extra), exc.status,
                        headers=exc.headers)


def wrap(endpoint: Endpoint) -> RequestHandler:
    async def run(request: Request) -> Response:
        services: Services = request.app.state.services
        try:
            params = _parse_params(dict(request.path_params))
            principal = _authenticate(request, services) if endpoint.auth else None
            if not endpoint.auth and request.headers.get("authorization"):
                try:
                    principal = _authenticate(request, services)
                except ApiError:
                    principal = None
            if principal is not None:
                request_facts(request.scope).user_id = principal.user_id
            ctx = Ctx(request, services, principal, params)
            if endpoint.query is not None:
                ctx.query = _read_query(request, endpoint.query)
            if endpoint.body is not None:
                ctx.body = await _read_json(
                    request, endpoint.body, endpoint.body_required, endpoint.max_body_bytes
                )
            result = await endpoint.handler(ctx)
            return render(result, endpoint)
        except ApiError as exc:
            return _error_response(exc)
        except billing_limits.PlanLimitReached as exc:
            return _error_response(plan_limit_error(exc))
        except BodyTooLarge:
            return _error_response(ApiError(413, "payload_too_large", "request body too large"))
        except asyncpg.PostgresError as exc:
            mapped = database_error(exc)
            if mapped is None:
                raise
            log.info("%s %s refused by the database: %s", request.method, request.url.path, exc)
            return _error_response(mapped)

    run.__name__ = endpoint.operation_id
    return run


def to_routes(endpoints: list[Endpoint], prefix: str = "") -> list[Route]:
    """One route per path; ``prefix`` (where the routes are mounted) makes the template that
    api_logs records."""
    by_path: dict[str, list[Endpoint]] = {}
    for endpoint in endpoints:
        by_path.setdefault(endpoint.path, []).append(endpoint)
    routes: list[Route] = []
    for path, group in by_path.items():
        handlers = {e.method: wrap(e) for e in group}

        async def dispatch(
            request: Request, handlers: dict[str, RequestHandler] = handlers,
            template: str = prefix + path,
        ) -> Response:
            request_facts(request.scope).route = template
            handler = handlers.get(request.method)
            if handler is None and request.method == "HEAD":
                handler = handlers.get("GET")
            if handler is None:
                allow = ", ".join(sorted(handlers))
                return JSONResponse(
                    error_body("method_not_allowed", "method not allowed"),
                    405,
                    headers={"Allow": allow},
                )
            return await handler(request)

        routes.append(Route(path, dispatch, methods=ALL_METHODS))
    return routes
