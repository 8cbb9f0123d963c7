"""The migrated schema matches the seed (tests/persistence/seed_schema.md, the contract).

Every table, column, type, nullability, default, check constraint, foreign key, unique
constraint, primary key and index of the seed is compared with pg_catalog. Deliberate
differences are listed once, in DEVIATIONS (mirrored in sql/README.md), each with its reason.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from persistence.db import Database
from tests.persistence.seed_parser import (
    REPO_ROOT,
    normalise_index_columns,
    parse_check_values,
    parse_indexes,
    parse_tables,
    seed_text,
)
from tests.support.databases import PostgresForTests

PARTITIONED = "monthly range partitioning (seed note 3): the partition key must be in the key"
DUPLICATE = "duplicates the index of a UNIQUE constraint (a btree scans both directions)"
LOG_REFERENCE = "a log row keeps its history but never blocks deleting what it names: set null"

# (table, item) -> (value in the migrated schema, reason). None for an index: not created.
DEVIATIONS: dict[tuple[str, str], tuple[Any, str]] = {
    ("usage_records", "primary_key"): (("id", "recorded_at"), PARTITIONED),
    ("usage_records", "recorded_at.not_null"): (True, PARTITIONED),
    ("api_logs", "primary_key"): (("id", "created_at"), PARTITIONED),
    ("api_logs", "created_at.not_null"): (True, PARTITIONED),
    ("analytics_events", "primary_key"): (("id", "created_at"), PARTITIONED),
    ("analytics_events", "created_at.not_null"): (True, PARTITIONED),
    ("api_integrations", "unique(user_id,workspace_id,provider).nulls_not_distinct"): (
        True,
        "with nulls distinct a user could store any number of personal (workspace_id null) "
        "keys per provider; NULLS NOT DISTINCT (PostgreSQL 15+) makes them unique",
    ),
    ("workspaces", "idx_workspaces_slug"): (None, DUPLICATE + ": unique (slug)"),
    ("projects", "idx_projects_slug"): (None, DUPLICATE + ": unique (workspace_id, slug)"),
    ("customers", "idx_customers_user"): (None, DUPLICATE + ": unique (user_id)"),
    ("customers", "idx_customers_stripe"): (None, DUPLICATE + ": unique (stripe_customer_id)"),
    ("git_repositories", "idx_git_repositories_project"): (
        None, DUPLICATE + ": unique (project_id)"
    ),
    ("files", "idx_files_path"): (None, DUPLICATE + ": unique (project_id, path)"),
    ("files", "idx_files_project_path"): (None, DUPLICATE + ": unique (project_id, path)"),
    ("file_versions", "idx_file_versions_file"): (
        None, DUPLICATE + ": unique (file_id, version_number)"
    ),
    ("messages", "idx_messages_conversation_created"): (
        None, "duplicates idx_messages_conversation (same columns, scanned backwards)"
    ),
    ("usage_records", "idx_usage_records_user_date"): (
        None, "identical to idx_usage_records_user"
    ),
    ("background_jobs", "scheduled_for.default"): (
        "now()", "the job queue claims rows with scheduled_for <= now(): a row inserted without "
        "it is due at once instead of never",
    ),
    # 0085: log rows must not block deleting what they mention (the app deletes workspaces
    # and projects; with no action, one logged row made that fail).
    ("api_logs", "user_id.references"): (("users", "id", "set null"), LOG_REFERENCE),
    ("error_logs", "user_id.references"): (("users", "id", "set null"), LOG_REFERENCE),
    ("error_logs", "project_id.references"): (("projects", "id", "set null"), LOG_REFERENCE),
    ("analytics_events", "user_id.references"): (("users", "id", "set null"), LOG_REFERENCE),
    ("analytics_events", "workspace_id.references"): (
        ("workspaces", "id", "set null"), LOG_REFERENCE
    ),
    ("performance_metrics", "metric_type.check"): (
        frozenset({"api_latency", "db_query", "page_load", "ai_response", "execution"}),
        "execution times of user code are a metric type of their own (0085)",
    ),
}

COLUMNS = """
select c.relname as table, a.attname as column, format_type(a.atttypid, a.atttypmod) as type,
       a.attnotnull as not_null, pg_get_expr(d.adbin, d.adrelid) as default
from pg_attribute a
join pg_class c on c.oid = a.attrelid
left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
where c.relnamespace = 'public'::regnamespace and c.relkind in ('r', 'p')
  and not c.relispartition and a.attnum > 0 and not a.attisdropped
"""
CONSTRAINTS = """
select c.relname as table, k.contype::text as kind, pg_get_constraintdef(k.oid) as definition,
       array(select a.attname from unnest(k.conkey) with ordinality u(n, i)
             join pg_attribute a on a.attrelid = k.conrelid and a.attnum = u.n
             order by u.i)::text[] as columns,
       k.confrelid::regclass::text as target,
       array(select a.attname from unnest(k.confkey) with ordinality u(n, i)
             join pg_attribute a on a.attrelid = k.confrelid and a.attnum = u.n
             order by u.i)::text[] as target_columns,
       k.confdeltype::text as on_delete,
       coalesce(i.indnullsnotdistinct, false) as nulls_not_distinct
from pg_constraint k
join pg_class c on c.oid = k.conrelid
left join pg_index i on i.indexrelid = k.conindid
where c.relnamespace = 'public'::regnamespace and not c.relispartition
"""
INDEXES = """
select i.relname as name, c.relname as table, am.amname as method,
       pg_get_indexdef(i.oid) as definition
from pg_index x
join pg_class i on i.oid = x.indexrelid
join pg_class c on c.oid = x.indrelid
join pg_am am on am.oid = i.relam
where c.relnamespace = 'public'::regnamespace and not c.relispartition
"""
ON_DELETE = {"a": "no action", "r": "restrict", "c": "cascade", "n": "set null",
             "d": "set default"}

SEED = parse_tables(seed_text())
SEED_INDEXES = parse_indexes(seed_text())


def deviation(table: str, item: str, seed_value: Any) -> Any:
    return DEVIATIONS[(table, item)][0] if (table, item) in DEVIATIONS else seed_value


def normalise_default(expr: str | None) -> str | None:
    if expr is None:
        return None
    return re.sub(r"::[a-z ]+(\[\])?", "", expr.lower()).strip()


@dataclass
class Catalog:
    columns: dict[tuple[str, str], asyncpg.Record]
    constraints: list[asyncpg.Record]
    indexes: dict[str, asyncpg.Record]

    def of(self, table: str, kind: str) -> list[asyncpg.Record]:
        return [r for r in self.constraints if r["table"] == table and r["kind"] == kind]


async def _load_catalog(dsn: str) -> Catalog:
    conn = await asyncpg.connect(dsn)
    try:
        columns = {(r["table"], r["column"]): r for r in await conn.fetch(COLUMNS)}
        constraints = list(await conn.fetch(CONSTRAINTS))
        indexes = {r["name"]: r for r in await conn.fetch(INDEXES)}
    finally:
        await conn.close()
    return Catalog(columns, constraints, indexes)


@pytest.fixture(scope="module")
def catalog(postgres: PostgresForTests) -> Catalog:
    """The catalog of one migrated database, read once for the module's read-only tests."""

    async def load() -> Catalog:
        dsn = await postgres.create_database()
        try:
            return await _load_catalog(dsn)
        finally:
            await postgres.drop_database(dsn)

    return asyncio.run(load())


def test_the_seed_defines_30_tables_not_38() -> None:
    # The seed's footer says 38; its CREATE TABLE blocks define 30.
    assert len(SEED) == 30
    assert len(SEED_INDEXES) == 77


def test_every_seed_column_has_its_type_nullability_and_default(catalog: Catalog) -> None:
    problems: list[str] = []
    for table in SEED.values():
        for column in table.columns.values():
            actual = catalog.columns.get((table.name, column.name))
            if actual is None:
                problems.append(f"{table.name}.{column.name}: missing")
                continue
            expected = {
                "type": column.type,
                "not_null": deviation(table.name, f"{column.name}.not_null", column.not_null),
                "default": deviation(
                    table.name, f"{column.name}.default", normalise_default(column.default)
                ),
            }
            found = {
                "type": actual["type"],
                "not_null": actual["not_null"],
                "default": normalise_default(actual["default"]),
            }
            if expected != found:
                problems.append(f"{table.name}.{column.name}: seed {expected} != db {found}")
    assert problems == []


def test_every_seed_check_constraint_exists(catalog: Catalog) -> None:
    problems: list[str] = []
    for table in SEED.values():
        actual: set[tuple[str, frozenset[str]]] = set()
        for row in catalog.of(table.name, "c"):
            if not set(row["columns"]) <= set(table.columns):
                continue  # a later migration's extension column
            match = re.fullmatch(
                r"CHECK \(\((\w+) = ANY \(ARRAY\[(.*)\]\)\)\)", row["definition"]
            )
            assert match, row["definition"]
            actual.add(parse_check_values(f"({match.group(1)} in ({match.group(2)}))"))
        expected = {
            (c.name, deviation(table.name, f"{c.name}.check", c.check))
            for c in table.columns.values() if c.check is not None
        }
        if expected != actual:
            problems.append(f"{table.name}: seed {sorted(expected)} != db {sorted(actual)}")
    assert problems == []


def test_every_seed_foreign_key_has_its_target_and_delete_action(catalog: Catalog) -> None:
    problems: list[str] = []
    for table in SEED.values():
        actual = {
            row["columns"][0]: (row["target"], row["target_columns"][0],
                                ON_DELETE[row["on_delete"]])
            for row in catalog.of(table.name, "f")
            if row["columns"][0] in table.columns
        }
        expected = {
            c.name: deviation(table.name, f"{c.name}.references", c.references)
            for c in table.columns.values() if c.references is not None
        }
        if expected != actual:
            problems.append(f"{table.name}: seed {expected} != db {actual}")
    assert problems == []


def test_primary_keys_and_unique_constraints_match(catalog: Catalog) -> None:
    problems: list[str] = []
    for table in SEED.values():
        seed_pk = tuple(c.name for c in table.columns.values() if c.primary_key)
        primary = [tuple(r["columns"]) for r in catalog.of(table.name, "p")]
        if primary != [deviation(table.name, "primary_key", seed_pk)]:
            problems.append(f"{table.name}: primary key {primary} != seed {seed_pk}")
        expected = {
            cols: deviation(table.name, f"unique({','.join(cols)}).nulls_not_distinct", False)
            for cols in [*((c.name,) for c in table.columns.values() if c.unique),
                         *table.uniques]
        }
        actual = {tuple(r["columns"]): r["nulls_not_distinct"]
                  for r in catalog.of(table.name, "u") if set(r["columns"]) <= set(table.columns)}
        if expected != actual:
            problems.append(f"{table.name}: unique {actual} != seed {expected}")
    assert problems == []


def test_seed_indexes_exist_except_documented_duplicates(catalog: Catalog) -> None:
    problems: list[str] = []
    for index in SEED_INDEXES.values():
        actual = catalog.indexes.get(index.name)
        if deviation(index.table, index.name, index) is None:
            if actual is not None:
                problems.append(f"{index.name}: documented as not created but exists")
            continue
        if actual is None:
            problems.append(f"{index.name}: missing")
            continue
        columns = re.search(r"USING \w+ \((.*)\)$", actual["definition"])
        assert columns, actual["definition"]
        found = (actual["table"], actual["method"], normalise_index_columns(columns.group(1)))
        if found != (index.table, index.method, index.columns):
            problems.append(f"{index.name}: {found} != seed {index}")
    assert problems == []


async def test_updated_at_trigger_on_every_table_with_the_column(db: Database) -> None:
    async with db.acquire() as conn:
        with_column = {
            r[0] for r in await conn.fetch(
                "select table_name from information_schema.columns where table_schema = 'public'"
                " and column_name = 'updated_at'"
            )
        }
        with_trigger = {
            r[0] for r in await conn.fetch(
                "select c.relname from pg_trigger t join pg_class c on c.oid = t.tgrelid"
                " join pg_proc p on p.oid = t.tgfoid"
                " where p.proname = 'update_updated_at_column' and not t.tgisinternal"
            )
        }
        seed_with_column = {t.name for t in SEED.values() if "updated_at" in t.columns}
        assert len(seed_with_column) == 12
        assert seed_with_column <= with_column
        # Tables of later migrations (e.g. document_states) manage updated_at themselves.
        assert seed_with_column <= with_trigger

        user_id = await conn.fetchval(
            "insert into auth.users (email, raw_user_meta_data)"
            " values ('sync@example.test', '{\"full_name\": \"Sync\"}') returning id"
        )
        row = await conn.fetchrow("select email, full_name from public.users where id = $1",
                                  user_id)
        assert row is not None and tuple(row) == ("sync@example.test", "Sync")
        await conn.execute("update auth.users set email = 'new@example.test' where id = $1",
                           user_id)
        assert await conn.fetchval(
            "select email from public.users where id = $1", user_id) == "new@example.test"
        before = await conn.fetchval("select updated_at from public.users where id = $1", user_id)
        async with conn.transaction():
            await conn.execute("update public.users set bio = 'x' where id = $1", user_id)
        assert await conn.fetchval(
            "select updated_at from public.users where id = $1", user_id) > before


def test_every_deviation_is_documented_in_sql_readme() -> None:
    readme = (REPO_ROOT / "sql" / "README.md").read_text()
    missing = [f"`{table}` | `{item}`" for table, item in DEVIATIONS
               if f"`{table}` | `{item}`" not in readme]
    assert missing == []
    assert Path(REPO_ROOT / "tests" / "persistence" / "seed_schema.md").exists()
