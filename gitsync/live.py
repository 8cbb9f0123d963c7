"""The project's files as collaborators see them: the one module that calls the document hub.

Reads take the live text of documents (loaded rooms, or the update log when it holds
edits not compacted yet) and the stored text of the rest in one query. Writes go through
the hub as diffs of the CRDT text (``write_text``), so open editors watch a pull happen
and keep typing: ``apply_if_unchanged`` checks that the document still reads the text a
merge was computed from and applies the result with no ``await`` in between, so no
keystroke can land in the gap; when one did, the caller merges again from the new text.

Keep the hub's surface here small (``HubPort``): the hub is being split into typed
services, and this is the only file that would change with it.
"""

from __future__ import annotations

import uuid
from typing import Any, Protocol

from gitsync.merge import OursEntry
from persistence import git as store
from persistence.db import Database
from sockets.close_codes import NOT_A_DOCUMENT


class HubPort(Protocol):
    """What this module uses of ``collab.hub.DocumentHub``."""

    def live_text(self, file_id: uuid.UUID) -> str | None: ...

    async def read_text(self, file_id: uuid.UUID) -> str | None: ...

    async def write_text(self, file_id: uuid.UUID, text: str, user_id: str | uuid.UUID) -> None:
        ...

    async def room(self, file_id: uuid.UUID) -> Any: ...

    async def close_file(self, file_id: uuid.UUID, code: int, reason: str) -> None: ...


class LiveFiles:
    def __init__(self, hub: HubPort | None, db: Database) -> None:
        self.hub = hub
        self.db = db

    async def read_project(self, project_id: uuid.UUID) -> dict[str, OursEntry]:
        """Every live file of the project by path: text (live) or stored object key."""
        async with self.db.acquire() as conn:
            rows = await store.project_files(conn, project_id)
        files: dict[str, OursEntry] = {}
        for row in rows:
            file_id = row["id"]
            if row["storage_path"] is not None:
                files[row["path"]] = OursEntry(row["path"], file_id, None, row["storage_path"])
                continue
            text = self.hub.live_text(file_id) if self.hub is not None else None
            if text is None and row["pending"] and self.hub is not None:
                text = await self.hub.read_text(file_id)
            if text is None:
                text = row["content"] or ""
            files[row["path"]] = OursEntry(row["path"], file_id, text)
        return files

    async def current_text(self, file_id: uuid.UUID) -> str | None:
        """The document's text now, its room loaded here (so later changes apply as diffs
        to what editors hold); None when the file is gone."""
        if self.hub is None:
            async with self.db.acquire() as conn:
                content = await conn.fetchval(
                    "select content from public.files where id = $1 and not is_deleted",
                    file_id,
                )
            return str(content) if content is not None else None
        try:
            await self.hub.room(file_id)
        except Exception:  # FileGone and the like: the file was deleted meanwhile
            return None
        return self.hub.live_text(file_id)

    async def apply_if_unchanged(
        self, file_id: uuid.UUID, expected: str, text: str, user_id: uuid.UUID
    ) -> bool:
        """Make the document read ``text`` if it still reads ``expected``; False (nothing
        written) when an edit arrived since. The check and the diff run in one step."""
        if self.hub is None:
            async with self.db.service() as conn:
                done = await conn.fetchval(
                    "update public.files set content = $3, size_bytes = octet_length($3),"
                    " updated_by = $4 where id = $1 and content is not distinct from $2"
                    " returning id", file_id, expected, text, user_id)
            return done is not None
        if self.hub.live_text(file_id) != expected:
            return False
        # write_text applies the diff before its first suspension when the room is loaded
        # (it is: current_text loaded it, and nothing above awaited since the check).
        await self.hub.write_text(file_id, text, user_id)
        return True

    async def became_object(self, file_id: uuid.UUID) -> None:
        """Close the editors of a document whose file is now a stored object."""
        if self.hub is not None:
            await self.hub.close_file(file_id, NOT_A_DOCUMENT, "the file is now binary")

    async def deleted(self, file_id: uuid.UUID) -> None:
        if self.hub is not None:
            await self.hub.close_file(file_id, 4404, "file deleted")
