"""Keyset pagination: an opaque cursor of (sort key, id), never an offset."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from server.errors import ApiError

DEFAULT_LIMIT = 50
MAX_LIMIT = 200


class PageQuery(BaseModel):
    """`?limit=&cursor=` on every list endpoint."""

    limit: int = Field(DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: str | None = Field(None, max_length=512)


def _encode_key(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"t": value.isoformat()}
    if isinstance(value, uuid.UUID):
        return {"u": str(value)}
    return value


def _decode_key(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"t"}:
        return datetime.fromisoformat(str(value["t"]))
    if isinstance(value, dict) and set(value) == {"u"}:
        return uuid.UUID(str(value["u"]))
    return value


def encode_cursor(sort_key: Any, row_id: uuid.UUID) -> str:
    raw = json.dumps([_encode_key(sort_key), str(row_id)], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str, key_type: type) -> tuple[Any, uuid.UUID]:
    """(sort key, id) from a cursor; a malformed or foreign cursor is a 400."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        key, row_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        value = _decode_key(key)
        if not isinstance(value, key_type) or isinstance(value, bool):
            raise TypeError("cursor key of the wrong type")
        return value, uuid.UUID(str(row_id))
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as exc:
        raise ApiError(400, "invalid_cursor", "cursor is malformed") from exc


def page(
    rows: list[dict[str, Any]], limit: int, sort_field: str
) -> dict[str, Any]:
    """`{"items", "next_cursor"}` from `limit + 1` fetched rows."""
    items = rows[:limit]
    next_cursor = None
    if len(rows) > limit and items:
        last = items[-1]
        next_cursor = encode_cursor(last[sort_field], last["id"])
    return {"items": items, "next_cursor": next_cursor}
