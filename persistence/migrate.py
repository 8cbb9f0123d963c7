"""Migration runner: applies ``sql/NNNN_concern.sql`` in order, once each.

- Each file runs in its own transaction, its ``schema_migrations`` row inserted first.
- A session advisory lock serialises runners, so two processes starting at once are safe.
- A database that has migrations this code does not know (a newer release ran against it),
  or whose recorded checksum differs from the file (a landed migration was edited), is refused.
- Numbers only grow: a pending file numbered below the newest applied one is refused (it
  would run after its successors on existing databases and before them on fresh ones, so the
  two would end in different schemas). ``sql/schema.sql`` shows the result of them all.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "sql"
FILE_PATTERN = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Generated from a migrated database (persistence/schema_dump.py), never run.
SCHEMA_FILE = "schema.sql"
# Any constant works; it only has to be the same for every runner.
MIGRATION_LOCK_KEY = 0x1C4EA7E5

CREATE_MIGRATIONS_TABLE = """
create table if not exists public.schema_migrations (
  version text primary key,
  name text not null,
  checksum text not null,
  applied_at timestamptz not null default now()
);
alter table public.schema_migrations enable row level security;
"""
SELECT_APPLIED = "select version, name, checksum from public.schema_migrations order by version"
INSERT_APPLIED = (
    "insert into public.schema_migrations (version, name, checksum) values ($1, $2, $3)"
)
TABLE_EXISTS = "select to_regclass('public.schema_migrations') is not null"


class MigrationError(Exception):
    code = "migration_error"


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True)
class MigrationStatus:
    applied: list[str]
    pending: list[str]
    unknown: list[str]

    @property
    def latest(self) -> str | None:
        return self.applied[-1] if self.applied else None


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    migrations: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        if path.name == SCHEMA_FILE:
            continue
        match = FILE_PATTERN.match(path.name)
        if not match:
            raise MigrationError(f"migration file name not NNNN_concern.sql: {path.name}")
        migrations.append(Migration(match.group(1), match.group(2), path.read_text()))
    versions = [m.version for m in migrations]
    if len(versions) != len(set(versions)):
        raise MigrationError(f"duplicate migration numbers in {directory}")
    return migrations


async def migration_status(
    conn: asyncpg.Connection, migrations: list[Migration] | None = None
) -> MigrationStatus:
    known = {m.version: m for m in (migrations or load_migrations())}
    rows = await conn.fetch(SELECT_APPLIED) if await conn.fetchval(TABLE_EXISTS) else []
    applied = [r["version"] for r in rows]
    return MigrationStatus(
        applied=applied,
        pending=[v for v in sorted(known) if v not in set(applied)],
        unknown=[v for v in applied if v not in known],
    )


async def migrate(conn: asyncpg.Connection, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply every pending migration; return the versions applied by this call."""
    migrations = load_migrations(directory)
    await conn.execute("select pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        await conn.execute(CREATE_MIGRATIONS_TABLE)
        rows = {r["version"]: r for r in await conn.fetch(SELECT_APPLIED)}
        known = {m.version: m for m in migrations}
        unknown = sorted(set(rows) - set(known))
        if unknown:
            raise MigrationError(
                "database has migrations this code does not know: " + ", ".join(unknown)
            )
        for version, row in rows.items():
            if row["checksum"] != known[version].checksum:
                raise MigrationError(
                    f"migration {version}_{row['name']} was changed after it was applied"
                )
        refuse_out_of_order([m for m in migrations if m.version not in rows], rows)
        applied: list[str] = []
        for migration in migrations:
            if migration.version in rows:
                continue
            async with conn.transaction():
                await conn.execute(
                    INSERT_APPLIED, migration.version, migration.name, migration.checksum
                )
                await conn.execute(migration.sql)
            applied.append(migration.version)
        return applied
    finally:
        await conn.execute("select pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)


def refuse_out_of_order(pending: list[Migration], applied: dict[str, asyncpg.Record]) -> None:
    """Raise when a pending migration is numbered below the newest applied one."""
    if not pending or not applied:
        return
    newest = max(applied)
    early = [m for m in pending if m.version < newest]
    if early:
        names = ", ".join(f"{m.version}_{m.name}.sql" for m in early)
        raise MigrationError(
            f"pending migration {names} is numbered below {newest}_{applied[newest]['name']}.sql,"
            " the newest applied one: migrations only grow, renumber it above"
            f" {newest} (sql/README.md)"
        )


async def migrate_dsn(dsn: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    conn = await asyncpg.connect(dsn)
    try:
        return await migrate(conn, directory)
    finally:
        await conn.close()
