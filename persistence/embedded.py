"""The embedded PostgreSQL default: a ``pgserver`` cluster in the data directory.

Used when ``DATABASE_URL`` is unset, so ``make run`` needs no database installed.
These calls block (initdb, pg_ctl): call them before the event loop starts or in a thread.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def start_embedded_postgres(data_dir: Path, *, cleanup: str | None = "stop") -> tuple[str, Any]:
    """Start (or reuse) a PostgreSQL cluster in ``data_dir``; return its DSN and handle.

    ``cleanup="stop"`` stops the server when the process exits and keeps the data;
    ``"delete"`` also removes the directory (throwaway test servers).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

    # pgserver logs every pg_ctl command line at INFO; only its problems matter here.
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    data_dir.mkdir(parents=True, exist_ok=True)
    get_server = pgserver.get_server  # type: ignore[attr-defined]
    server = get_server(str(data_dir), cleanup_mode=cleanup)
    dsn: str = server.get_uri()
    log.info("embedded postgresql at %s", data_dir)
    return dsn, server
