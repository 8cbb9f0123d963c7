"""Git sync benchmark: connect+import and push for 50 and 5,000 files, against plain git.

    python bench/git_sync.py [--dsn postgresql://postgres@127.0.0.1:5432/postgres]
                             [--sizes 50,5000] [--repeats 3]

One app server (uvicorn, in-process worker) on a fresh database (``bench_git``, dropped at
the end) and one local smart-HTTP git host (``git http-backend``, as in the tests). Per
size and repeat:
- **import**: ``POST /projects/{id}/git`` (ls-remote, row, job) until the import job is
  completed (fetch, ``ls-tree``, ``cat-file --batch``, bulk inserts, base tree);
  peer: ``git clone --bare`` of the same repository over the same host;
- **push one edit**: one file changed over REST, ``POST .../git/push`` until the job is
  completed (fetch, live read of every file, ``fast-import``, push);
- **push all**: the imported project connected to an empty repository and pushed (every
  file in one new commit); peer: ``git push`` of a commit with the same files from a
  plain clone.
Medians over repeats, printed and written to ``bench/results/git-sync-latest.json``.
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

from gitsync.config import GitConfig  # noqa: E402
from persistence.db import dsn_with_database  # noqa: E402
from persistence.migrate import migrate_dsn  # noqa: E402
from server.settings import Settings  # noqa: E402
from storage.config import StorageConfig  # noqa: E402
from tests.api.client import Api  # noqa: E402
from tests.fakes.git_http import GitHost, git  # noqa: E402
from tests.gitsync.helpers import make_stage  # noqa: E402
from tests.gitsync.test_large import many_files  # noqa: E402
from tests.support.servers import start_live_server  # noqa: E402

DATABASE = "bench_git"


async def timed(step: Any) -> float:
    started = time.perf_counter()
    await step
    return time.perf_counter() - started


def peer_clone(host: GitHost, name: str, scratch: Path) -> float:
    target = scratch / f"peer-{time.monotonic_ns()}.git"
    started = time.perf_counter()
    git("clone", "--quiet", "--bare", host.url(name).replace("http://", "http://bench:tok@"),
        str(target))
    took = time.perf_counter() - started
    shutil.rmtree(target, ignore_errors=True)
    return took


async def one_round(api: Api, server: Any, host: GitHost, size: int, n: int,
                    scratch: Path) -> dict[str, float]:
    files = many_files(size, binaries=min(10, size // 5))
    name = f"bench/r{size}-{n}"
    await asyncio.to_thread(host.create, name, files, token="tok")
    stage = await make_stage(api, server)
    started = time.perf_counter()
    connected = await stage.connect(host.url(name), token="tok")
    job = await stage.job(connected["job_id"], timeout=600)
    assert job["status"] == "completed", job
    result = {"import_s": time.perf_counter() - started,
              # In a thread: the host serves from this event loop.
              "peer_clone_s": await asyncio.to_thread(peer_clone, host, name, scratch)}
    conn = await asyncpg.connect(server.settings.database_url)
    try:
        first = await conn.fetchval(
            "select id from public.files where project_id = $1 and type = 'file'"
            " and storage_path is null limit 1", uuid.UUID(stage.project_id))
    finally:
        await conn.close()
    await api.ok("PUT", f"/files/{first}/content", {"content": "edited\n"},
                 token=stage.owner.token)
    started = time.perf_counter()
    job = await stage.push("One edit")
    assert job["status"] == "completed", job
    result["push_one_s"] = time.perf_counter() - started
    # Every file into an empty repository.
    empty = f"bench/e{size}-{n}"
    host.create(empty, token="tok")
    await stage.call("DELETE", f"/projects/{stage.project_id}/git")
    connected = await stage.connect(host.url(empty), token="tok")
    assert (await stage.job(connected["job_id"]))["status"] == "completed"
    started = time.perf_counter()
    job = await stage.push("Everything")
    assert job["status"] == "completed", job
    result["push_all_s"] = time.perf_counter() - started
    peer_name = f"bench/p{size}-{n}"
    host.create(peer_name, token="tok")
    result["peer_push_all_s"] = await asyncio.to_thread(peer_push_all, host, peer_name, files,
                                                        scratch)
    return result


def peer_push_all(host: GitHost, name: str, files: dict[str, bytes | str],
                  scratch: Path) -> float:
    # The peer is plain git on this machine: the token in the URL is fine for a bench.
    url = host.url(name).replace("http://", "http://bench:tok@")
    work = scratch / f"peer-push-{time.monotonic_ns()}"
    work.mkdir()
    git("init", "--quiet", str(work))
    for path, data in files.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_bytes(data.encode() if isinstance(data, str) else data)
    git("add", "--all", cwd=work)
    git("commit", "--quiet", "-m", "all", cwd=work)
    started = time.perf_counter()
    git("push", "--quiet", url, "HEAD:refs/heads/main", cwd=work)
    took = time.perf_counter() - started
    shutil.rmtree(work, ignore_errors=True)
    return took


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dsn", default=os.environ.get(
        "DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--sizes", default="50,5000")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output",
                        default=str(ROOT / "bench" / "results" / "git-sync-latest.json"))
    args = parser.parse_args()
    admin = await asyncpg.connect(args.dsn)
    await admin.execute(f"drop database if exists {DATABASE}")
    await admin.execute(f"create database {DATABASE}")
    dsn = dsn_with_database(args.dsn, DATABASE)
    scratch = Path(tempfile.mkdtemp(prefix="bench-git-"))
    try:
        await migrate_dsn(dsn)
        settings = Settings(
            database_url=dsn, jwt_secret="bench-secret-0123456789-0123456789-0123",
            data_dir=scratch / "data", allowed_origins=("http://127.0.0.1",),
            encryption_keys=("bench:" + "A" * 43,),
            storage=StorageConfig(directory=scratch / "objects"),
            git=GitConfig(cache_dir=scratch / "cache", allowed_hosts=("127.0.0.1",),
                          allow_http=True),
        )
        settings = dataclasses.replace(settings, db_pool_max=8)
        server = await start_live_server(settings)
        host = GitHost(scratch / "host")
        await host.start()
        results: dict[str, dict[str, float]] = {}
        try:
            async with aiohttp.ClientSession() as session:
                api = Api(session, server.url)
                for size in [int(s) for s in args.sizes.split(",")]:
                    rounds = [await one_round(api, server, host, size, n, scratch)
                              for n in range(args.repeats)]
                    medians = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
                    medians["import_vs_clone"] = medians["import_s"] / medians["peer_clone_s"]
                    medians["push_all_vs_git_push"] = (medians["push_all_s"]
                                                       / medians["peer_push_all_s"])
                    results[str(size)] = medians
                    print(size, json.dumps({k: round(v, 3) for k, v in medians.items()}))
        finally:
            await host.stop()
            await server.stop()
        Path(args.output).write_text(json.dumps(
            {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "repeats":
             args.repeats, "results": results}, indent=2) + "\n")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        await admin.execute(f"drop database if exists {DATABASE} with (force)")
        await admin.close()


if __name__ == "__main__":
    asyncio.run(main())
