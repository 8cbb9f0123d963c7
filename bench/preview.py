"""Live preview benchmark: edit -> preview updated, per app kind, and the proxy's cost.

    python bench/preview.py [--dsn postgresql://postgres@127.0.0.1:5432/postgres]
                            [--edits 15] [--requests 400]

One app server (uvicorn, in-process worker, the preview origin on a free port) on a fresh
database (``bench_preview``, dropped at the end). For each kind (static site, Node http
server, Python Starlette app) a development preview is deployed, then ``--edits`` times a
new marker is written into the served file through the document hub (the path of an
editor's keystrokes after the socket) and the preview origin is polled every 10 ms until
it serves the marker: that is the edit -> preview latency (watcher tick, write, restart
for server apps, first answer). Then, on the Node preview, ``--requests`` GETs alternate
between a direct request to the app (through its relay's Unix socket, the floor) and one
through the preview origin (TCP, access check, proxy, same socket), in the same run.
Printed and written to ``bench/results/preview-latest.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from execution.config import ExecutionConfig  # noqa: E402
from persistence.db import Database, dsn_with_database  # noqa: E402
from persistence.migrate import migrate_dsn  # noqa: E402
from preview.config import PreviewConfig  # noqa: E402
from preview.runtime import PreviewKey  # noqa: E402
from server.settings import Settings  # noqa: E402
from storage.config import StorageConfig  # noqa: E402
from tests.conftest import TEST_JWT_SECRET  # noqa: E402
from tests.preview.apps import NODE_APP, PYTHON_APP, STATIC_SITE  # noqa: E402
from tests.preview.conftest import Client  # noqa: E402
from tests.support import factories  # noqa: E402
from tests.support.servers import start_live_server  # noqa: E402

DATABASE = "bench_preview"
errors: dict[str, int] = {}  # non-200 answers or cut responses seen while polling, per kind
KINDS = {
    "static": (STATIC_SITE, "index.html", "hello static v1"),
    "node": (NODE_APP, "server.js", "hello node v1"),
    "python": (PYTHON_APP, "app.py", "hello python v1"),
}


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return {"p50_ms": round(statistics.median(ordered) * 1000, 2),
            "p95_ms": round(p95 * 1000, 2), "n": len(ordered)}


async def edit_latencies(client: Client, db: Database, owner: uuid.UUID, workspace: uuid.UUID,
                         kind: str, edits: int) -> list[float]:
    files, path, marker = KINDS[kind]
    async with db.service() as conn:
        project = await factories.create_project(conn, workspace, f"bench {kind}")
        ids = {p: await factories.create_file(conn, project, p, c) for p, c in files.items()}
    row = await client.deploy(owner, project)
    done = await client.wait(owner, project, row["id"], timeout=300)
    assert done["status"] == "success", done["logs"]
    cookie = await client.session_cookie(owner, project)
    documents = client.server.app.state.services.documents
    latencies = []
    for n in range(edits):
        new = f"edit {n} {uuid.uuid4().hex[:6]}"
        started = time.perf_counter()
        await documents.write_text(ids[path], files[path].replace(marker, new), owner)
        while True:
            try:
                status, text = await client.get(project, "/", cookie=cookie)
            except aiohttp.ClientError:
                errors[kind] = errors.get(kind, 0) + 1  # a request cut by a restart
                continue
            if status == 200 and new in text:
                break
            if status != 200:
                errors[kind] = errors.get(kind, 0) + 1
            if time.perf_counter() - started > 30:
                raise AssertionError(f"{kind}: edit {n} not shown after 30 s")
            await asyncio.sleep(0.01)
        latencies.append(time.perf_counter() - started)
        await asyncio.sleep(0.3)  # let the watcher settle before the next edit
    return latencies


async def proxy_overhead(client: Client, db: Database, owner: uuid.UUID, workspace: uuid.UUID,
                         requests: int) -> dict[str, Any]:
    async with db.service() as conn:
        project = await factories.create_project(conn, workspace, "bench proxy")
        for p, c in NODE_APP.items():
            await factories.create_file(conn, project, p, c)
    row = await client.deploy(owner, project)
    assert (await client.wait(owner, project, row["id"]))["status"] == "success"
    cookie = await client.session_cookie(owner, project)
    socket = client.previews.runtime.socket(PreviewKey(project, "development"))
    direct_times: list[float] = []
    proxied_times: list[float] = []
    headers = {"Host": client.host(project), "Cookie": cookie}
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(
            path=str(socket), force_close=True)) as direct:
        for n in range(requests):
            if n % 2 == 0:
                started = time.perf_counter()
                async with direct.get("http://app/") as reply:
                    assert reply.status == 200
                    await reply.read()
                direct_times.append(time.perf_counter() - started)
            else:
                started = time.perf_counter()
                async with client.http.get(client.url("/"), headers=headers) as reply:
                    assert reply.status == 200
                    await reply.read()
                proxied_times.append(time.perf_counter() - started)
    direct_p, proxied_p = percentiles(direct_times), percentiles(proxied_times)
    return {"direct": direct_p, "proxied": proxied_p,
            "added_p50_ms": round(proxied_p["p50_ms"] - direct_p["p50_ms"], 2),
            "ratio_p50": round(proxied_p["p50_ms"] / direct_p["p50_ms"], 2)}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dsn", default=os.environ.get(
        "DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--edits", type=int, default=15)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--kinds", default="static,node,python")
    parser.add_argument("--output",
                        default=str(ROOT / "bench" / "results" / "preview-latest.json"))
    args = parser.parse_args()
    admin = await asyncpg.connect(args.dsn)
    await admin.execute(f"drop database if exists {DATABASE} with (force)")
    await admin.execute(f"create database {DATABASE}")
    dsn = dsn_with_database(args.dsn, DATABASE)
    scratch = Path(tempfile.mkdtemp(prefix="bench-preview-"))
    scratch.chmod(0o711)
    results: dict[str, Any] = {"started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                               "edit_to_preview": {}}
    try:
        await migrate_dsn(dsn)
        settings = Settings(
            database_url=dsn, jwt_secret=TEST_JWT_SECRET,  # the tests' Client signs with it
            data_dir=scratch / "data", allowed_origins=("http://127.0.0.1",),
            encryption_keys=("bench:" + "A" * 43,),
            storage=StorageConfig(directory=scratch / "objects"),
            execution=ExecutionConfig(workdir_root=scratch / "workspaces",
                                      storage_root=scratch / "storage"),
            preview=PreviewConfig(port=0),
        )
        server = await start_live_server(dataclasses.replace(settings, db_pool_max=8))
        db = await Database.connect(dsn, min_size=1, max_size=4)
        try:
            async with db.service() as conn:
                owner = await factories.create_user(conn)
                workspace = await factories.create_workspace(conn, owner)
            async with aiohttp.ClientSession() as http:
                client = Client(server, http)
                for kind in args.kinds.split(","):
                    latencies = await edit_latencies(client, db, owner, workspace, kind,
                                                     args.edits)
                    results["edit_to_preview"][kind] = percentiles(latencies)
                    print(kind, results["edit_to_preview"][kind], flush=True)
                results["proxy"] = await proxy_overhead(client, db, owner, workspace,
                                                        args.requests)
                print("proxy", results["proxy"], flush=True)
        finally:
            await db.close()
            await server.stop()
    finally:
        await admin.execute(f"drop database if exists {DATABASE} with (force)")
        await admin.close()
        shutil.rmtree(scratch, ignore_errors=True)
    results["errors_while_polling"] = errors
    results["watch_interval_s"] = PreviewConfig().watch_interval_s
    results["machine_note"] = "shared 2-core machine, other work running: noisy"
    Path(args.output).write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    asyncio.run(main())
