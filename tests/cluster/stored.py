"""What the database holds for a document: snapshot + update log, decoded with pycrdt."""

from __future__ import annotations

import uuid
from typing import Any

from pycrdt import Doc, Text

from persistence.db import Database

SELECT_STATE = "select state from public.document_states where file_id = $1"
SELECT_LOG = "select update from public.document_updates where file_id = $1 order by id"
SELECT_CONTENT = "select content from public.files where id = $1"


async def stored_doc(db: Database, file_id: uuid.UUID) -> Doc[Any]:
    """Snapshot plus every logged update, read in one transaction."""
    doc: Doc[Any] = Doc()
    doc.get("content", type=Text)
    async with db.acquire() as conn, conn.transaction(isolation="repeatable_read"):
        state = await conn.fetchval(SELECT_STATE, file_id)
        rows = await conn.fetch(SELECT_LOG, file_id)
    if state:
        doc.apply_update(state)
    for row in rows:
        doc.apply_update(row["update"])
    return doc


def doc_text(doc: Doc[Any]) -> str:
    return str(doc.get("content", type=Text))


def missing_from(final: Doc[Any], earlier: Doc[Any]) -> bytes:
    """What ``earlier`` holds that ``final`` lacks (the empty update if nothing)."""
    return earlier.get_update(final.get_state())


def doc_from_text_state(update: bytes) -> Doc[Any]:
    doc: Doc[Any] = Doc()
    doc.get("content", type=Text)
    doc.apply_update(update)
    return doc


async def stored_content(db: Database, file_id: uuid.UUID) -> str | None:
    async with db.acquire() as conn:
        content: str | None = await conn.fetchval(SELECT_CONTENT, file_id)
        return content
