"""``sql/schema.sql``: the schema a database has after every migration, as one readable file.

Read from the catalog of a migrated database (not ``pg_dump``, whose output changes with
its own version and, since 15.14, carries a random ``\\restrict`` key). Every object is
printed in name order with ``search_path`` empty, so names come out schema-qualified and
the text depends only on the migrations (PostgreSQL 15 and 16 print the same file).
Left out on purpose: the dated monthly partitions (``<table>_pYYYY_MM``, made by
``public.create_monthly_partitions`` for the current months), objects cloned onto
partitions from their parent, roles (cluster-wide; 0001 creates them) and rows. The file
is for reading (objects in name order, not dependency order); migrations build databases.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg

from persistence.db import dsn_with_database
from persistence.migrate import MIGRATIONS_DIR, SCHEMA_FILE, migrate_dsn

SCHEMA_PATH = MIGRATIONS_DIR / SCHEMA_FILE
SCHEMAS = ["auth", "public"]
ROLES = ["anon", "authenticated", "service_role"]
DATED_PARTITION = r"_p\d{4}_\d{2}$"
# Namespaces by name ($1): a cast to regnamespace fails where a schema does not exist.
OURS = "(select oid from pg_namespace where nspname = any($1::text[]))"

SELECT_NEWEST_MIGRATION = (
    "select version || '_' || name from public.schema_migrations order by version desc limit 1"
)

# Tables and their partitions, except the dated ones.
SELECT_TABLES = f"""
select c.oid, c.oid::regclass::text as name, c.relkind::text as kind, c.relispartition,
       c.relrowsecurity, c.relforcerowsecurity,
       case when c.relispartition then (
         select i.inhparent::regclass::text from pg_inherits i where i.inhrelid = c.oid
       ) end as parent,
       pg_get_expr(c.relpartbound, c.oid) as bound,
       case when c.relkind = 'p' then pg_get_partkeydef(c.oid) end as partition_key
from pg_class c
where c.relnamespace in {OURS} and c.relkind in ('r', 'p')
  and not (c.relispartition and c.relname ~ $2)
order by 2
"""

SELECT_COLUMNS = """
select a.attrelid, quote_ident(a.attname) as name, format_type(a.atttypid, a.atttypmod) as type,
       a.attnotnull, a.attidentity::text as identity, a.attgenerated::text as generated,
       pg_get_expr(d.adbin, d.adrelid) as default_expr,
       case when a.attcollation <> t.typcollation then a.attcollation::regcollation::text end
         as collation
from pg_attribute a
join pg_type t on t.oid = a.atttypid
left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum
where a.attrelid = any($1::oid[]) and a.attnum > 0 and not a.attisdropped
order by a.attrelid, a.attnum
"""

# Constraints written on the table itself (not cloned from a parent; not-null is per column).
SELECT_CONSTRAINTS = """
select conrelid, quote_ident(conname) as name, pg_get_constraintdef(oid) as definition
from pg_constraint
where conrelid = any($1::oid[]) and conparentid = 0 and contype <> 'n'
order by conrelid, conname
"""

# Indexes not made by a constraint and not cloned onto a partition.
SELECT_INDEXES = """
select pg_get_indexdef(i.indexrelid) as definition
from pg_index i
join pg_class c on c.oid = i.indexrelid
where i.indrelid = any($1::oid[])
  and not exists (select 1 from pg_constraint k where k.conindid = i.indexrelid
                  and k.conrelid = i.indrelid)
  and not exists (select 1 from pg_inherits h where h.inhrelid = i.indexrelid)
order by c.relnamespace::regnamespace::text, c.relname
"""

SELECT_SEQUENCES = f"""
select c.oid::regclass::text as name, format_type(s.seqtypid, null) as type, s.seqstart,
       s.seqincrement, s.seqmin, s.seqmax, s.seqcache, s.seqcycle,
       (select d.refobjid::regclass::text || '.' || quote_ident(a.attname)
        from pg_depend d
        join pg_attribute a on a.attrelid = d.refobjid and a.attnum = d.refobjsubid
        where d.objid = c.oid and d.classid = 'pg_class'::regclass and d.deptype in ('a', 'i')
       ) as owned_by,
       exists (select 1 from pg_depend d where d.objid = c.oid and d.deptype = 'i')
         as identity
from pg_class c join pg_sequence s on s.seqrelid = c.oid
where c.relnamespace in {OURS}
order by 1
"""

SELECT_FUNCTIONS = f"""
select p.oid::regprocedure::text as signature, pg_get_functiondef(p.oid) as definition
from pg_proc p
where p.pronamespace in {OURS} and p.prokind in ('f', 'p')
  and not exists (select 1 from pg_depend d where d.objid = p.oid and d.deptype = 'e')
order by 1
"""

SELECT_TRIGGERS = f"""
select pg_get_triggerdef(t.oid) as definition
from pg_trigger t join pg_class c on c.oid = t.tgrelid
where c.relnamespace in {OURS} and not t.tgisinternal and t.tgparentid = 0
order by t.tgrelid::regclass::text, t.tgname
"""

SELECT_POLICIES = f"""
select quote_ident(p.polname) as name, p.polrelid::regclass::text as tbl, p.polpermissive,
       case p.polcmd when 'r' then 'select' when 'a' then 'insert' when 'w' then 'update'
                     when 'd' then 'delete' else 'all' end as command,
       case when p.polroles = '{{0}}' then array['public']
            else array(select quote_ident(rolname) from pg_roles
                       where oid = any(p.polroles) order by 1) end as roles,
       pg_get_expr(p.polqual, p.polrelid) as using_expr,
       pg_get_expr(p.polwithcheck, p.polrelid) as check_expr
from pg_policy p join pg_class c on c.oid = p.polrelid
where c.relnamespace in {OURS}
order by 2, 1
"""

# Privileges granted to the API roles and PUBLIC (the owner's own rights vary by server).
SELECT_TABLE_GRANTS = f"""
select c.oid::regclass::text as object, g.grantee,
       string_agg(lower(g.privilege_type), ', ' order by g.privilege_type) as privileges
from pg_class c
cross join lateral aclexplode(coalesce(c.relacl, acldefault('r', c.relowner))) a
cross join lateral (select case when a.grantee = 0 then 'public'
                                else quote_ident(pg_get_userbyid(a.grantee)) end as grantee,
                           a.privilege_type) g
where c.relnamespace in {OURS} and c.relkind in ('r', 'p', 'S', 'v', 'm')
  and a.grantee <> c.relowner and (a.grantee = 0 or pg_get_userbyid(a.grantee) = any($2))
  and not (c.relispartition and c.relname ~ $3)
group by 1, 2
order by 1, 2
"""

SELECT_FUNCTION_GRANTS = f"""
select p.oid::regprocedure::text as object, g.grantee
from pg_proc p
cross join lateral aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) a
cross join lateral (select case when a.grantee = 0 then 'public'
                                else quote_ident(pg_get_userbyid(a.grantee)) end as grantee) g
where p.pronamespace in {OURS} and p.prokind in ('f', 'p')
  and a.grantee <> p.proowner and (a.grantee = 0 or pg_get_userbyid(a.grantee) = any($2))
order by 1, 2
"""

SELECT_SCHEMA_GRANTS = """
select n.nspname::text as object, g.grantee,
       string_agg(lower(a.privilege_type), ', ' order by a.privilege_type) as privileges
from pg_namespace n
cross join lateral aclexplode(coalesce(n.nspacl, acldefault('n', n.nspowner))) a
cross join lateral (select case when a.grantee = 0 then 'public'
                                else quote_ident(pg_get_userbyid(a.grantee)) end as grantee) g
where n.nspname = any($1) and a.grantee <> n.nspowner
  and (a.grantee = 0 or pg_get_userbyid(a.grantee) = any($2))
group by 1, 2
order by 1, 2
"""


async def fresh_schema(server_dsn: str, directory: Path = MIGRATIONS_DIR) -> str:
    """Migrate a new scratch database on ``server_dsn``'s server, dump it, drop it."""
    name = f"icreate_schema_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server_dsn)
    try:
        await admin.execute(f'create database "{name}"')
        try:
            dsn = dsn_with_database(server_dsn, name)
            await migrate_dsn(dsn, directory)
            conn = await asyncpg.connect(dsn)
            try:
                return await dump_schema(conn)
            finally:
                await conn.close()
        finally:
            await admin.execute(f'drop database if exists "{name}" with (force)')
    finally:
        await admin.close()


async def dump_schema(conn: asyncpg.Connection) -> str:
    """The schema of ``conn``'s database as SQL text (deterministic, ends with a newline)."""
    async with conn.transaction(readonly=True):
        await conn.execute("set local search_path = ''")
        return "\n".join(await _sections(conn)) + "\n"


async def _sections(conn: asyncpg.Connection) -> list[str]:
    newest = await conn.fetchval(SELECT_NEWEST_MIGRATION)
    out = [
        "-- Generated by `make schema` (python -m server schema): the schema after every",
        f"-- migration in sql/ (through {newest}), read from the database's catalog.",
        "-- Do not edit: add a migration, then regenerate (sql/README.md).",
        "-- Not shown: roles (0001), monthly partitions <table>_pYYYY_MM (0014), rows.",
        "",
    ]
    for schema in SCHEMAS:
        out.append(f"create schema if not exists {schema};")
    out.append("")
    tables = await conn.fetch(SELECT_TABLES, SCHEMAS, DATED_PARTITION)
    oids = [t["oid"] for t in tables]
    columns = _by_relation(await conn.fetch(SELECT_COLUMNS, oids))
    constraints = _by_relation(await conn.fetch(SELECT_CONSTRAINTS, oids), key="conrelid")
    sequences = await conn.fetch(SELECT_SEQUENCES, SCHEMAS)
    out.append("-- Tables")
    for table in tables:
        out.append(_create_table(table, columns.get(table["oid"], []),
                                 constraints.get(table["oid"], [])))
    out.append("-- Sequences")
    out += [_sequence(s) for s in sequences if not s["identity"]]
    out.append("")
    out.append("-- Row-level security")
    for table in tables:
        if table["relrowsecurity"]:
            out.append(f"alter table {table['name']} enable row level security;")
        if table["relforcerowsecurity"]:
            out.append(f"alter table {table['name']} force row level security;")
    out.append("")
    out.append("-- Indexes")
    out += [f"{r['definition']};" for r in await conn.fetch(SELECT_INDEXES, oids)]
    out.append("")
    out.append("-- Functions")
    for fn in await conn.fetch(SELECT_FUNCTIONS, SCHEMAS):
        out.append(fn["definition"].rstrip() + ";\n")
    out.append("-- Triggers")
    out += [f"{r['definition']};" for r in await conn.fetch(SELECT_TRIGGERS, SCHEMAS)]
    out.append("")
    out.append("-- Policies")
    out += [_policy(p) for p in await conn.fetch(SELECT_POLICIES, SCHEMAS)]
    out.append("")
    out.append("-- Privileges of anon, authenticated, service_role and public")
    for g in await conn.fetch(SELECT_SCHEMA_GRANTS, SCHEMAS, ROLES):
        out.append(f"grant {g['privileges']} on schema {g['object']} to {g['grantee']};")
    for g in await conn.fetch(SELECT_TABLE_GRANTS, SCHEMAS, ROLES, DATED_PARTITION):
        out.append(f"grant {g['privileges']} on {g['object']} to {g['grantee']};")
    for g in await conn.fetch(SELECT_FUNCTION_GRANTS, SCHEMAS, ROLES):
        out.append(f"grant execute on function {g['object']} to {g['grantee']};")
    return out


def _by_relation(
    rows: list[asyncpg.Record], key: str = "attrelid"
) -> dict[int, list[asyncpg.Record]]:
    grouped: dict[int, list[asyncpg.Record]] = {}
    for row in rows:
        grouped.setdefault(row[key], []).append(row)
    return grouped


def _create_table(
    table: asyncpg.Record, columns: list[asyncpg.Record], constraints: list[asyncpg.Record]
) -> str:
    if table["relispartition"]:
        return f"create table {table['name']} partition of {table['parent']} {table['bound']};\n"
    lines = [f"  {_column(c)}" for c in columns]
    lines += [f"  constraint {k['name']} {k['definition']}" for k in constraints]
    tail = f" partition by {table['partition_key']}" if table["partition_key"] else ""
    return f"create table {table['name']} (\n" + ",\n".join(lines) + f"\n){tail};\n"


def _column(column: asyncpg.Record) -> str:
    parts = [column["name"], column["type"]]
    if column["collation"]:
        parts.append(f"collate {column['collation']}")
    if column["generated"] == "s":
        parts.append(f"generated always as ({column['default_expr']}) stored")
    elif column["default_expr"] is not None:
        parts.append(f"default {column['default_expr']}")
    if column["identity"]:
        kind = "always" if column["identity"] == "a" else "by default"
        parts.append(f"generated {kind} as identity")
    if column["attnotnull"]:
        parts.append("not null")
    return " ".join(parts)


def _sequence(seq: asyncpg.Record) -> str:
    text = (
        f"create sequence {seq['name']} as {seq['type']} start {seq['seqstart']}"
        f" increment {seq['seqincrement']} minvalue {seq['seqmin']} maxvalue {seq['seqmax']}"
        f" cache {seq['seqcache']}{' cycle' if seq['seqcycle'] else ''}"
    )
    if seq["owned_by"]:
        text += f" owned by {seq['owned_by']}"
    return text + ";"


def _policy(policy: asyncpg.Record) -> str:
    text = (
        f"create policy {policy['name']} on {policy['tbl']}"
        f" as {'permissive' if policy['polpermissive'] else 'restrictive'}"
        f" for {policy['command']} to {', '.join(policy['roles'])}"
    )
    if policy["using_expr"] is not None:
        text += f"\n  using ({policy['using_expr']})"
    if policy["check_expr"] is not None:
        text += f"\n  with check ({policy['check_expr']})"
    return text + ";"
