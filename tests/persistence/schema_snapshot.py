"""A comparable description of a database's schema (public and auth), for migration tests."""

from __future__ import annotations

import asyncpg

SNAPSHOT_QUERIES = {
    "columns": """
        select table_schema, table_name, column_name, data_type, is_nullable, column_default
        from information_schema.columns where table_schema in ('public', 'auth')
        order by 1, 2, 3""",
    "relations": """
        select n.nspname, c.relname, c.relkind::text, c.relrowsecurity, c.relispartition,
               pg_get_expr(c.relpartbound, c.oid)
        from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname in ('public', 'auth') order by 1, 2""",
    "constraints": """
        select conrelid::regclass::text, conname, pg_get_constraintdef(oid)
        from pg_constraint where connamespace in ('public'::regnamespace, 'auth'::regnamespace)
        order by 1, 2""",
    "indexes": """
        select schemaname, tablename, indexname, indexdef from pg_indexes
        where schemaname in ('public', 'auth') order by 1, 2, 3""",
    "policies": """
        select tablename, policyname, cmd, roles::text, qual, with_check from pg_policies
        where schemaname = 'public' order by 1, 2""",
    "functions": """
        select p.oid::regprocedure::text, p.prosecdef, p.proconfig::text, md5(p.prosrc)
        from pg_proc p where p.pronamespace in ('public'::regnamespace, 'auth'::regnamespace)
        order by 1""",
    "triggers": """
        select tgrelid::regclass::text, tgname, pg_get_triggerdef(oid) from pg_trigger
        where not tgisinternal order by 1, 2""",
    "grants": """
        select table_schema, table_name, grantee, privilege_type
        from information_schema.role_table_grants
        where grantee in ('anon', 'authenticated', 'service_role') order by 1, 2, 3, 4""",
    "migrations": "select version, name, checksum from public.schema_migrations order by 1",
}


async def schema_snapshot(conn: asyncpg.Connection) -> dict[str, list[tuple[object, ...]]]:
    return {
        name: [tuple(row) for row in await conn.fetch(query)]
        for name, query in SNAPSHOT_QUERIES.items()
    }
