"""Every stored secret moved under the newest key (run by the ``secrets.reencrypt`` job).

Walks each secret column in id order, in batches, each batch one transaction with its rows
locked (``skip locked``: a row being written right now is left for the next run, which
finds it again). Values already under the newest key are not touched; a value that no key
decrypts any more is counted and left as it is. Idempotent: a second run changes nothing.
After it has reported ``failed == 0``, an old key can be removed from ``ENCRYPTION_KEYS``.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field

import asyncpg

from persistence.crypto import DecryptionError, Keyring
from persistence.db import Database

log = logging.getLogger(__name__)

# Table -> its secret columns. Each value's context is "<table>.<column>:<row id>".
# (oauth_flows' PKCE verifiers live ten minutes: they are not worth moving.)
SECRET_COLUMNS: dict[str, tuple[str, ...]] = {
    "oauth_connections": ("access_token", "refresh_token"),
    "api_integrations": ("api_key_encrypted",),
    "environment_variables": ("value_encrypted",),
    "git_repositories": ("credentials_encrypted", "webhook_secret_encrypted"),
}


@dataclass
class Report:
    reencrypted: dict[str, int] = field(default_factory=dict)
    failed: int = 0

    def as_dict(self) -> dict[str, object]:
        return {"reencrypted": self.reencrypted, "failed": self.failed}


def _batch_query(table: str, columns: tuple[str, ...]) -> str:
    stale = " or ".join(
        f"({c} is not null and left({c}, length($1)) <> $1)" for c in columns
    )
    return (
        f"select id, {', '.join(columns)} from public.{table} "
        f"where id > $2 and ({stale}) order by id limit $3 for update skip locked"
    )


def _update_query(table: str, columns: tuple[str, ...]) -> str:
    sets = ", ".join(f"{c} = ${i + 2}" for i, c in enumerate(columns))
    return f"update public.{table} set {sets} where id = $1"


async def _batch(
    conn: asyncpg.Connection, keyring: Keyring, table: str, columns: tuple[str, ...],
    after: uuid.UUID, limit: int, report: Report,
) -> tuple[uuid.UUID | None, int]:
    rows = await conn.fetch(_batch_query(table, columns), keyring.current_prefix, after, limit)
    changed = 0
    for row in rows:
        values: list[str | None] = []
        for column in columns:
            stored = row[column]
            context = f"{table}.{column}:{row['id']}"
            if stored is None or keyring.is_current(stored):
                values.append(stored)
                continue
            try:
                values.append(keyring.encrypt(keyring.decrypt(stored, context), context))
            except DecryptionError as exc:
                report.failed += 1
                log.error("%s %s of %s cannot be re-encrypted: %s", table, column, row["id"], exc)
                values.append(stored)
        if values != [row[c] for c in columns]:
            await conn.execute(_update_query(table, columns), row["id"], *values)
            changed += 1
    return (rows[-1]["id"] if len(rows) == limit else None), changed


async def reencrypt_all(db: Database, keyring: Keyring, batch: int = 200) -> Report:
    report = Report()
    for table, columns in SECRET_COLUMNS.items():
        total = 0
        after: uuid.UUID | None = uuid.UUID(int=0)
        while after is not None:
            async with db.service() as conn:
                after, changed = await _batch(conn, keyring, table, columns, after, batch,
                                              report)
            total += changed
        report.reencrypted[table] = total
    return report
