"""What other packages may call on collab's hubs, as narrow protocols (docs/hubs.md).

execution/ (workspaces, runs, terminals) and ai/ (chat context, tools) are given these
instead of the hubs themselves, so mypy checks every call across the package boundary and
the import graph shows who needs what; ``collab.hub.DocumentHub`` and
``collab.project_hub.ProjectHub`` satisfy them structurally.
"""

from __future__ import annotations

import uuid
from typing import Any, Protocol


class DocumentTexts(Protocol):
    """The text of a file as its editors see it (live CRDT text when loaded)."""

    def live_text(self, file_id: uuid.UUID) -> str | None:
        """The text of a loaded room, without any I/O; None when it is not loaded."""
        ...

    async def read_text(self, file_id: uuid.UUID) -> str | None:
        """Live text when loaded, else the stored document's; None: no such file."""
        ...


class Documents(DocumentTexts, Protocol):
    """Reading and writing documents through their CRDT (never ``files.content`` directly)."""

    async def write_text(self, file_id: uuid.UUID, text: str, user_id: str | uuid.UUID) -> None:
        ...

    async def close_file(self, file_id: uuid.UUID, code: int, reason: str) -> None: ...


class ProjectEvents(Protocol):
    """Events to every socket of a project's channel, on every node."""

    async def publish(self, project_id: uuid.UUID, event: dict[str, Any]) -> None: ...
