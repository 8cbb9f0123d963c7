"""The migration runner on the real migrations and on synthetic ones."""

from __future__ import annotations

import asyncio
import difflib
from pathlib import Path

import asyncpg
import pytest

from persistence.migrate import MigrationError, load_migrations, migrate
from persistence.schema_dump import SCHEMA_PATH, dump_schema, fresh_schema
from tests.persistence.schema_snapshot import schema_snapshot
from tests.support.databases import PostgresForTests

CONCURRENT_RUNNERS = 6


async def _snapshot(dsn: str) -> dict[str, list[tuple[object, ...]]]:
    conn = await asyncpg.connect(dsn)
    try:
        return await schema_snapshot(conn)
    finally:
        await conn.close()


async def test_migrating_twice_ends_in_the_template_schema(
    postgres: PostgresForTests, database_url: str
) -> None:
    dsn = await postgres.create_empty_database()
    try:
        conn = await asyncpg.connect(dsn)
        try:
            applied = await migrate(conn)
            first = await schema_snapshot(conn)
            assert await migrate(conn) == []
            second = await schema_snapshot(conn)
        finally:
            await conn.close()
        assert applied == [m.version for m in load_migrations()]
        assert first == second
        assert first == await _snapshot(database_url)
    finally:
        await postgres.drop_database(dsn)


async def test_concurrent_runners_apply_each_migration_once(
    postgres: PostgresForTests, database_url: str
) -> None:
    dsn = await postgres.create_empty_database()
    try:
        conns = [await asyncpg.connect(dsn) for _ in range(CONCURRENT_RUNNERS)]
        try:
            results = await asyncio.gather(*(migrate(c) for c in conns))
            recorded = await conns[0].fetch(
                "select version, count(*) from public.schema_migrations group by version"
            )
        finally:
            for conn in conns:
                await conn.close()
        applied = sorted(v for result in results for v in result)
        assert applied == [m.version for m in load_migrations()]
        assert all(count == 1 for _, count in recorded)
        assert await _snapshot(dsn) == await _snapshot(database_url)
    finally:
        await postgres.drop_database(dsn)


async def test_a_database_with_an_unknown_migration_is_refused(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "insert into public.schema_migrations (version, name, checksum)"
            " values ('9999', 'from_the_future', 'x')"
        )
        with pytest.raises(MigrationError, match="9999"):
            await migrate(conn)
    finally:
        await conn.close()


async def test_an_edited_migration_is_refused(postgres: PostgresForTests, tmp_path: Path) -> None:
    (tmp_path / "0001_first.sql").write_text("create table public.first (id int primary key);\n")
    (tmp_path / "0002_second.sql").write_text("create table public.second (id int);\n")
    dsn = await postgres.create_empty_database()
    try:
        conn = await asyncpg.connect(dsn)
        try:
            assert await migrate(conn, tmp_path) == ["0001", "0002"]
            (tmp_path / "0002_second.sql").write_text("create table public.second (id bigint);\n")
            with pytest.raises(MigrationError, match="0002_second was changed"):
                await migrate(conn, tmp_path)
            (tmp_path / "0002_second.sql").write_text("create table public.second (id int);\n")
            (tmp_path / "0003_third.sql").write_text("select 1;\n")
            assert await migrate(conn, tmp_path) == ["0003"]
        finally:
            await conn.close()
    finally:
        await postgres.drop_database(dsn)


async def test_a_failing_migration_leaves_nothing_behind(
    postgres: PostgresForTests, tmp_path: Path
) -> None:
    (tmp_path / "0001_ok.sql").write_text("create table public.ok (id int);\n")
    (tmp_path / "0002_broken.sql").write_text(
        "create table public.half (id int);\nselect no_such_function();\n"
    )
    dsn = await postgres.create_empty_database()
    try:
        conn = await asyncpg.connect(dsn)
        try:
            with pytest.raises(asyncpg.UndefinedFunctionError):
                await migrate(conn, tmp_path)
            assert await conn.fetchval("select to_regclass('public.half')") is None
            versions = [r[0] for r in await conn.fetch(
                "select version from public.schema_migrations order by 1"
            )]
            assert versions == ["0001"]
        finally:
            await conn.close()
    finally:
        await postgres.drop_database(dsn)


async def test_a_pending_migration_numbered_below_the_newest_applied_is_refused(
    postgres: PostgresForTests, tmp_path: Path
) -> None:
    (tmp_path / "0001_first.sql").write_text("create table public.first (id int);\n")
    (tmp_path / "0005_fifth.sql").write_text("create table public.fifth (id int);\n")
    dsn = await postgres.create_empty_database()
    try:
        conn = await asyncpg.connect(dsn)
        try:
            assert await migrate(conn, tmp_path) == ["0001", "0005"]
            (tmp_path / "0003_late.sql").write_text("create table public.late (id int);\n")
            with pytest.raises(MigrationError) as refused:
                await migrate(conn, tmp_path)
            assert "0003_late.sql" in str(refused.value)
            assert "0005_fifth.sql" in str(refused.value)
            assert await conn.fetchval("select to_regclass('public.late')") is None
            (tmp_path / "0003_late.sql").rename(tmp_path / "0006_late.sql")
            assert await migrate(conn, tmp_path) == ["0006"]
        finally:
            await conn.close()
    finally:
        await postgres.drop_database(dsn)


def test_the_generated_schema_file_is_not_a_migration(tmp_path: Path) -> None:
    (tmp_path / "0001_first.sql").write_text("select 1;\n")
    (tmp_path / "schema.sql").write_text("-- generated\n")
    assert [m.version for m in load_migrations(tmp_path)] == ["0001"]
    (tmp_path / "notes.sql").write_text("select 1;\n")
    with pytest.raises(MigrationError, match=r"notes\.sql"):
        load_migrations(tmp_path)


async def test_the_schema_file_matches_a_freshly_migrated_database(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        fresh = await dump_schema(conn)
    finally:
        await conn.close()
    stored = SCHEMA_PATH.read_text() if SCHEMA_PATH.exists() else ""
    if stored != fresh:
        diff = "".join(list(difflib.unified_diff(
            stored.splitlines(keepends=True), fresh.splitlines(keepends=True),
            "sql/schema.sql", "migrated from sql/",
        ))[:60])
        pytest.fail(
            "sql/schema.sql differs from a database migrated from sql/: regenerate it with"
            f" `make schema` (python -m server schema) and commit it\n{diff}"
        )


async def test_the_schema_command_writes_what_the_test_compares(
    postgres: PostgresForTests, database_url: str, tmp_path: Path
) -> None:
    (tmp_path / "0001_only.sql").write_text(
        "create table public.only_one (id int primary key, note text not null default 'x');\n"
    )
    text = await fresh_schema(postgres.admin_dsn, tmp_path)
    assert "(through 0001_only)" in text
    assert "create table public.only_one (\n  id integer not null,\n" in text
    assert "  note text default 'x'::text not null,\n" in text
    assert "constraint only_one_pkey PRIMARY KEY (id)" in text
    assert text == await fresh_schema(postgres.admin_dsn, tmp_path)
