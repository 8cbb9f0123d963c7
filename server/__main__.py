"""Command line: ``python -m server [serve|migrate|schema|worker|operators]`` (console script
``icreate``).

With ``DATABASE_URL`` unset, an embedded PostgreSQL is started in ``DATA_DIR/postgres``
and stopped on exit; its data stays for the next start.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import logging
import signal
import socket
import sys
from typing import Any

from persistence.migrate import MigrationError, migrate_dsn
from server.logs import configure_logging
from server.settings import Settings

log = logging.getLogger("icreate")

GC_YOUNG_THRESHOLD = 50_000
STARTUP_FAILURE = 3  # uvicorn's exit status when the app's startup failed


def resolve_database(settings: Settings) -> tuple[Settings, Any]:
    """Settings with a database URL, starting the embedded server when none is set."""
    if settings.database_url:
        return settings, None
    from persistence.embedded import start_embedded_postgres

    dsn, handle = start_embedded_postgres(settings.data_dir / "postgres")
    return dataclasses.replace(settings, database_url=dsn), handle


def cmd_migrate(settings: Settings) -> int:
    assert settings.database_url
    try:
        applied = asyncio.run(migrate_dsn(settings.database_url))
    except MigrationError as exc:
        log.error("migration refused: %s", exc)
        return 2
    log.info("applied %d migration(s) %s", len(applied), ", ".join(applied))
    return 0


def cmd_schema(settings: Settings, output: str) -> int:
    """Write the schema of a freshly migrated scratch database (``-`` for stdout)."""
    from persistence.schema_dump import fresh_schema

    assert settings.database_url
    try:
        text = asyncio.run(fresh_schema(settings.database_url))
    except MigrationError as exc:
        log.error("migration refused: %s", exc)
        return 2
    if output == "-":
        sys.stdout.write(text)
    else:
        with open(output, "w") as file:
            file.write(text)
        log.info("wrote %s", output)
    return 0


def cmd_serve(settings: Settings, host: str, port: int, workers_hint: str | None) -> int:
    from server.listen import listen_early

    # Listening before the imports and the migrations check: clients connecting meanwhile
    # (a restart's reconnecting editors) wait in the accept queue instead of being refused.
    sock = listen_early(host, port)
    with sock:
        return _serve_on(settings, host, port, sock)


def _serve_on(settings: Settings, host: str, port: int, sock: socket.socket) -> int:
    import uvicorn

    from server.app import create_app
    from server.serving import uvicorn_options

    status = cmd_migrate(settings)
    if status:
        return status
    # uvicorn re-raises a captured SIGTERM after its graceful shutdown; with the default
    # handler that kills the process before atexit stops the embedded PostgreSQL. A stop
    # that was asked for and completed is a clean exit.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    app = create_app(dataclasses.replace(settings, host=host, port=port))
    # Modules, classes and the app live as long as the process: keep them out of the cyclic
    # collector's full passes (one took 45 ms on a loaded server, under 2 ms with this).
    gc.collect()
    gc.freeze()
    # A young-generation collection every 50,000 allocations instead of 700: a burst of
    # connections allocates heavily (protocol objects, frames, tasks) and the default
    # collected so often that it cost a sixth of the CPU of opening 5,000 sockets
    # (bench/README.md, "connection storms"); older generations keep their ratios.
    gc.set_threshold(GC_YOUNG_THRESHOLD, 10, 10)
    log.info("serving on http://%s:%d (instance %s)", host, port, settings.instance_id)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=settings.log_level,
        timeout_graceful_shutdown=10,
        **uvicorn_options(settings),
    )
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    return 0 if server.started else STARTUP_FAILURE


def cmd_worker(settings: Settings, jobs_spec: str | None, concurrency: int | None) -> int:
    from server.worker_cli import run_worker

    status = cmd_migrate(settings)
    if status:
        return status
    return asyncio.run(run_worker(settings, jobs_spec, concurrency))


def cmd_operators(settings: Settings, action: str, email: str | None, note: str | None) -> int:
    """Grant, revoke or list service operators (who sees the whole service's operator page)."""
    from persistence import observability as store
    from persistence.db import Database

    assert settings.database_url
    database_url = settings.database_url

    async def run() -> int:
        db = await Database.connect(database_url, min_size=1, max_size=1)
        try:
            async with db.service() as conn:
                if action == "list":
                    for row in await store.list_operators(conn):
                        print(f"{row['email']}\t{row['granted_at']:%Y-%m-%d %H:%M}\t"
                              f"{row['note'] or ''}")
                    return 0
                assert email is not None
                if action == "grant":
                    done = await store.grant_operator(conn, email, note)
                else:
                    done = await store.revoke_operator(conn, email)
        finally:
            await db.close()
        if not done:
            log.error("no %s for %s", "account" if action == "grant" else "operator", email)
            return 1
        log.info("%s: %s", action, email)
        return 0

    return asyncio.run(run())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="icreate", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", help="apply migrations and serve the app (default)")
    serve.add_argument("--host", default=None)
    serve.add_argument("--port", type=int, default=None)
    sub.add_parser("migrate", help="apply pending migrations and exit")
    schema = sub.add_parser(
        "schema", help="write sql/schema.sql from a scratch database migrated from sql/"
    )
    schema.add_argument("--output", default=None, help="file to write, - for stdout")
    worker = sub.add_parser("worker", help="run a background-jobs worker until SIGTERM")
    worker.add_argument("--jobs", default=None, help="module:function listing the jobs to run")
    worker.add_argument("--concurrency", type=int, default=None)
    operators = sub.add_parser("operators", help="grant, revoke or list service operators")
    operators.add_argument("action", choices=["grant", "revoke", "list"])
    operators.add_argument("email", nargs="?")
    operators.add_argument("--note", default=None)
    args = parser.parse_args(argv)
    if args.command == "operators" and args.action != "list" and not args.email:
        parser.error("operators grant/revoke need an email")

    settings = Settings.from_env()
    configure_logging(settings.log_level)
    settings, _embedded = resolve_database(settings)
    if args.command == "migrate":
        return cmd_migrate(settings)
    if args.command == "schema":
        from persistence.schema_dump import SCHEMA_PATH

        return cmd_schema(settings, args.output or str(SCHEMA_PATH))
    if args.command == "worker":
        return cmd_worker(settings, args.jobs, args.concurrency)
    if args.command == "operators":
        return cmd_migrate(settings) or cmd_operators(settings, args.action, args.email, args.note)
    host = getattr(args, "host", None) or settings.host
    port = getattr(args, "port", None) or settings.port
    return cmd_serve(settings, host, port, None)


if __name__ == "__main__":
    sys.exit(main())
