"""Stored run records: times are clean decimals, not a float's binary expansion."""

from __future__ import annotations

from persistence import executions as store
from persistence.db import Database
from tests.support import factories


async def test_run_times_are_stored_to_the_microsecond(db: Database) -> None:
    async with db.service() as conn:
        user = await factories.create_user(conn)
        project = await factories.create_project(conn, await factories.create_workspace(conn, user))
        row = await store.create_execution(
            conn, user_id=user, project_id=project, file_id=None, language="python",
            source="print(1)", stdin="", status="in_queue", backend="sandbox",
        )
        # 27.392 has no exact binary form: stored as a float it read back 27.3919999999...
        finished = await store.finish_execution(
            conn, row["id"], status="accepted", stdout="1\n", stderr="", compile_output=None,
            exit_code=0, time_ms=27.392, wall_ms=0.1 + 0.2, memory_kb=9000, token=None,
            message=None,
        )
        stored = await conn.fetchrow(
            "select execution_time_ms::text as cpu, wall_time_ms::text as wall"
            " from public.code_executions where id = $1", row["id"],
        )
    assert finished is not None and finished["execution_time_ms"] == 27.392
    assert (stored["cpu"], stored["wall"]) == ("27.392", "0.300")
