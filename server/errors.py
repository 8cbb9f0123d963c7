"""Typed API errors and the JSON shape every failure takes: {"error": {"code", "message"}}."""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
        # Fields beside code and message in the error object (a 402's limit, used, plan).
        self.extra = extra or {}


def bad_request(message: str, code: str = "bad_request") -> ApiError:
    return ApiError(400, code, message)


def unauthorized(message: str = "authentication required", code: str = "unauthorized") -> ApiError:
    return ApiError(401, code, message, headers={"WWW-Authenticate": "Bearer"})


def forbidden(message: str = "not allowed", code: str = "forbidden") -> ApiError:
    return ApiError(403, code, message)


def not_found(message: str = "not found", code: str = "not_found") -> ApiError:
    return ApiError(404, code, message)


def conflict(message: str, code: str = "conflict") -> ApiError:
    return ApiError(409, code, message)


def payment_required(resource: str, limit: int, used: int, plan: str, message: str) -> ApiError:
    """A plan limit: 402 with what the client needs to offer the upgrade."""
    return ApiError(402, "plan_limit_reached", message,
                    extra={"resource": resource, "limit": limit, "used": used, "plan": plan})


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


async def api_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse(error_body(exc.code, exc.message, **exc.extra), exc.status,
                        headers=exc.headers)


HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    402: "payment_required",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
}


async def http_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = HTTP_CODES.get(exc.status_code, "error")
    return JSONResponse(
        error_body(code, str(exc.detail)), exc.status_code, headers=exc.headers
    )
