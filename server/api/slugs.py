"""Slugs from names (python-slugify), and the retry when one is taken."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg
from slugify import slugify

from server.errors import conflict

SLUG_PATTERN = r"^[a-z0-9]+(?:-[a-z0-9]+)*$"
MAX_SLUG = 64
ATTEMPTS = 6

T = TypeVar("T")


def slug_from(name: str, fallback: str) -> str:
    return slugify(name, max_length=MAX_SLUG - 7, word_boundary=True) or fallback


async def insert_with_slug(
    conn: asyncpg.Connection,
    explicit: str | None,
    name: str,
    fallback: str,
    insert: Callable[[str], Awaitable[T]],
) -> T:
    """Run ``insert(slug)`` in a savepoint; a taken generated slug gets a random suffix,
    a taken explicit slug is a 409."""
    base = explicit or slug_from(name, fallback)
    for attempt in range(ATTEMPTS):
        slug = base if attempt == 0 else f"{base}-{secrets.token_hex(3)}"
        try:
            async with conn.transaction():
                return await insert(slug)
        except asyncpg.UniqueViolationError as exc:
            if explicit is not None or "slug" not in (exc.constraint_name or "slug"):
                raise conflict(f"slug {slug!r} is taken", "slug_taken") from None
    raise conflict("could not find a free slug", "slug_taken")
