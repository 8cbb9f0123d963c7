"""AI edit benchmark: the assistant writing into a document with W watchers, against the chat
relay streaming the same provider's tokens to W watchers.

    .venv/bin/python bench/ai_edit.py [--watchers 5] [--rounds 3] [--deltas 400]
                                      [--interval-ms 0.5] [--targets fake,embedded]
                                      [--embedded-tokens 96] [--no-readme]

One run starts an embedded PostgreSQL and, per target, the app (``python -m server serve``)
with its provider: ``fake`` is ``ai_relay_provider.py`` (a delta of about 21 characters
every ``--interval-ms``), ``embedded`` the llama.cpp server with SmolLM2-135M (the app
starts it; its first round waits until it is ready). Each round, alternately:

- **edit**: W stock y-websocket clients (``ai_edit_watchers.mjs``, one Node process) on a
  fresh file; ``POST /files/{id}/ai-edits`` rewriting the whole file; every text change is
  timed at each client. Time to first character = first insertion at a client - the
  request's send time (the range's deletion comes first and does not count); characters/s =
  characters inserted / (last insertion - first insertion), median over clients.
- **chat**: W WebSocket watchers of one conversation (this process, aiohttp); one sends the
  question; the same two figures from the ``delta`` frames.

Wall-clock times on one machine (Node's ``performance.timeOrigin + now()``, Python's
``time.time_ns()``). Results: ``bench/results/ai-edit-latest.json`` and a section of
``bench/README.md``. Every process is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
sys.path.insert(0, str(REPO))

from procs import Pinned, wait_http_ok, wait_tcp  # noqa: E402

from persistence.db import Database  # noqa: E402
from persistence.migrate import migrate_dsn  # noqa: E402
from server.auth.tokens import issue_access_token  # noqa: E402
from server.settings import Settings  # noqa: E402
from tests.support import factories  # noqa: E402
from tests.support.net import free_port  # noqa: E402
from tests.support.servers import server_env  # noqa: E402

RESULTS = BENCH / "results"
README = BENCH / "README.md"
START, END = "<!-- ai-edit:start -->", "<!-- ai-edit:end -->"
SECRET = "bench-secret-0123456789-0123456789-0123456789"
BASE_TEXT = "def old():\n    return 1\n"


async def setup_database(dsn: str) -> dict[str, Any]:
    await migrate_dsn(dsn)
    db = await Database.connect(dsn, min_size=1, max_size=2)
    try:
        async with db.service() as conn:
            owner = await factories.create_user(conn)
            workspace = await factories.create_workspace(conn, owner)
            project = await factories.create_project(conn, workspace)
            conversation = await factories.create_conversation(conn, project, owner, "bench")
            await conn.execute("update public.subscription_plans set limits = limits - "
                               "'ai_tokens' where slug = 'free'")
    finally:
        await db.close()
    return {"owner": owner, "project": project, "conversation": conversation}


def median(values: list[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


class Target:
    """The app (and its fake provider) for one target."""

    def __init__(self, name: str, args: argparse.Namespace, dsn: str, work: Path) -> None:
        self.name = name
        self.procs: list[Pinned] = []
        extra = {"LOG_LEVEL": "warning"}
        if name == "fake":
            port = free_port()
            self.procs.append(Pinned(
                "provider", [sys.executable, str(BENCH / "ai_relay_provider.py"), str(port),
                             "--deltas", str(args.deltas), "--interval-ms",
                             str(args.interval_ms)], 1, work / "provider.log").start())
            wait_tcp(port, 30, self.procs[-1].proc)
            extra.update(AI_BASE_URL=f"http://127.0.0.1:{port}", AI_MODEL="bench",
                         AI_API_KEY="bench", AI_MAX_OUTPUT_TOKENS="4096")
        else:
            extra.update(AI_EMBEDDED="1", AI_EMBEDDED_INSTALL="0",
                         AI_MAX_OUTPUT_TOKENS=str(args.embedded_tokens))
        settings = Settings(database_url=dsn, jwt_secret=SECRET, data_dir=work / f"data-{name}")
        env = server_env(settings, extra)
        if name == "embedded":
            env["AI_EMBEDDED"] = "1"
        self.port = free_port()
        self.procs.append(Pinned(
            "server", [sys.executable, "-m", "server", "serve", "--port", str(self.port)], 0,
            work / f"server-{name}.log", env=env, cwd=REPO).start())
        wait_http_ok(f"{self.url}/healthz", 90, self.procs[-1].proc)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


async def wait_model(http: aiohttp.ClientSession, target: Target) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        async with http.get(f"{target.url}/healthz") as resp:
            health = await resp.json()
        if health.get("chat", {}).get("state") == "ready":
            return
        await asyncio.sleep(0.5)
    raise RuntimeError(f"the model did not start: {health}")


async def edit_round(http: aiohttp.ClientSession, target: Target, world: dict[str, Any],
                     token: str, watchers: int, headers: dict[str, str]) -> dict[str, Any]:
    async with http.post(f"{target.url}/api/v1/projects/{world['project']}/files",
                         json={"path": f"bench-{uuid.uuid4().hex}.py", "content": BASE_TEXT},
                         headers=headers) as resp:
        file_id = (await resp.json())["id"]
    node = subprocess.Popen(
        ["node", str(BENCH / "ai_edit_watchers.mjs"), f"ws://127.0.0.1:{target.port}/ws/docs",
         file_id, token, str(watchers)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        text=True, cwd=BENCH)
    assert node.stdin is not None and node.stdout is not None
    try:
        if (await asyncio.to_thread(node.stdout.readline)).strip() != "ready":
            raise RuntimeError("watchers did not sync")
        node.stdin.write("go\n")
        node.stdin.flush()
        await asyncio.to_thread(node.stdout.readline)
        asked_ms = time.time_ns() / 1e6
        async with http.post(f"{target.url}/api/v1/files/{file_id}/ai-edits",
                             json={"instruction": "rewrite it"}, headers=headers) as resp:
            edit = (await resp.json())["edit"]
        while True:
            async with http.get(f"{target.url}/api/v1/ai-edits/{edit['id']}",
                                headers=headers) as resp:
                row = (await resp.json())["edit"]
            if row["status"] != "running":
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.3)  # the last updates reach every watcher
        node.stdin.write("stop\n")
        node.stdin.flush()
        report = json.loads(await asyncio.to_thread(node.stdout.readline))
        node.stdin.write("exit\n")
        node.stdin.flush()
    finally:
        await asyncio.to_thread(node.wait, 10)
    written = len(row["output"]["text"])
    firsts, rates = [], []
    for client in report:
        changes = client["changes"]  # [time ms, characters inserted]
        if not changes:
            continue
        firsts.append(changes[0][0] - asked_ms)
        span = (changes[-1][0] - changes[0][0]) / 1000
        if span > 0:
            rates.append(sum(n for _, n in changes) / span)
    return {"first_char_ms": median(firsts), "chars_per_s": median(rates), "chars": written,
            "tokens": row["tokens_used"], "watchers_seen": len(firsts),
            "server_first_char_ms": row["output"]["first_char_ms"]}


async def chat_round(http: aiohttp.ClientSession, target: Target, world: dict[str, Any],
                     token: str, watchers: int) -> dict[str, Any]:
    url = (f"ws://127.0.0.1:{target.port}/ws/conversations/{world['conversation']}"
           f"?token={token}")
    sockets = [await http.ws_connect(url) for _ in range(watchers)]
    seen: list[list[tuple[float, int]]] = [[] for _ in sockets]
    tokens: dict[str, Any] = {}

    async def read(index: int, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for msg in ws:
            event = json.loads(msg.data)
            if event["type"] == "delta":
                seen[index].append((time.time_ns() / 1e6, len(event["text"])))
            elif event["type"] in ("done", "error") and "message_id" in event:
                tokens.update(event.get("tokens") or {})
                break

    readers = [asyncio.create_task(read(i, ws)) for i, ws in enumerate(sockets)]
    await asyncio.sleep(0.2)
    asked_ms = time.time_ns() / 1e6
    await sockets[0].send_str(json.dumps({"type": "user_message", "content": "rewrite it"}))
    await asyncio.wait_for(asyncio.gather(*readers), 600)
    for ws in sockets:
        await ws.close()
    firsts = [s[0][0] - asked_ms for s in seen if s]
    rates = []
    for s in seen:
        if len(s) > 1 and s[-1][0] > s[0][0]:
            rates.append(sum(n for _, n in s) / ((s[-1][0] - s[0][0]) / 1000))
    chars = median([sum(n for _, n in s) for s in seen])
    return {"first_char_ms": median(firsts), "chars_per_s": median(rates), "chars": chars,
            "tokens": tokens.get("total"), "watchers_seen": len(firsts)}


async def run_target(name: str, args: argparse.Namespace, dsn: str, world: dict[str, Any],
                     work: Path) -> dict[str, Any]:
    target = Target(name, args, dsn, work)
    token = issue_access_token(SECRET, str(world["owner"]), None)
    headers = {"authorization": f"Bearer {token}"}
    rounds: dict[str, list[dict[str, Any]]] = {"edit": [], "chat": []}
    try:
        async with aiohttp.ClientSession() as http:
            if name == "embedded":
                await wait_model(http, target)
            for index in range(args.rounds):
                order = ("edit", "chat") if index % 2 == 0 else ("chat", "edit")
                for kind in order:
                    if kind == "edit":
                        result = await edit_round(http, target, world, token, args.watchers,
                                                  headers)
                    else:
                        result = await chat_round(http, target, world, token, args.watchers)
                    rounds[kind].append(result)
                    print(name, kind, json.dumps(result), flush=True)
    finally:
        target.stop()
    return {kind: {"first_char_ms": median([r["first_char_ms"] for r in results]),
                   "chars_per_s": median([r["chars_per_s"] for r in results]),
                   "chars": median([float(r["chars"]) for r in results]),
                   "rounds": results}
            for kind, results in rounds.items()}


def render(results: dict[str, Any]) -> str:
    args = results["args"]
    lines = [
        START, "## AI edits (bench/ai_edit.py)", "",
        f"{args['watchers']} watchers, {args['rounds']} rounds per target, edit and chat "
        "alternating. `fake`: a delta of about 21 characters every "
        f"{args['interval_ms']} ms ({args['deltas']} deltas); `embedded`: SmolLM2-135M on "
        f"llama.cpp, at most {args['embedded_tokens']} tokens. The edit's text arrives "
        "through the document sockets (stock y-websocket clients), the chat's as `delta` "
        "frames. Medians over rounds of the medians over watchers.", "",
        "| provider | path | request → first character (ms) | characters/s | characters |",
        "|---|---|---:|---:|---:|",
    ]
    for name, target in results["targets"].items():
        for kind in ("edit", "chat"):
            row = target[kind]
            lines.append(f"| {name} | {'AI edit → document' if kind == 'edit' else 'chat relay'}"
                         f" | {row['first_char_ms']:.1f} | {row['chars_per_s']:,.0f} | "
                         f"{row['chars']:,.0f} |")
        first = target["edit"]["first_char_ms"] / target["chat"]["first_char_ms"]
        ratio = target["edit"]["chars_per_s"] / target["chat"]["chars_per_s"]
        lines.append(f"| {name} | edit ÷ chat | {first:.2f} | {ratio:.2f} | |")
    lines += ["", f"Run {results['started']}, {results['seconds']:.0f} s.", END]
    return "\n".join(lines)


def write_readme(section: str) -> None:
    text = README.read_text()
    if START in text:
        head, rest = text.split(START, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    README.write_text(text)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--watchers", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--deltas", type=int, default=400)
    parser.add_argument("--interval-ms", type=float, default=0.5)
    parser.add_argument("--embedded-tokens", type=int, default=96)
    parser.add_argument("--targets", default="fake,embedded")
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args()
    from persistence.embedded import start_embedded_postgres

    started, began = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), time.monotonic()
    with tempfile.TemporaryDirectory(prefix="icreate-ai-edit-") as tmp:
        work = Path(tmp)
        dsn, pg = start_embedded_postgres(work / "pg", cleanup="delete")
        try:
            world = await setup_database(dsn)
            targets = {name: await run_target(name, args, dsn, world, work)
                       for name in args.targets.split(",")}
        finally:
            pg.cleanup()
    results = {"started": started, "seconds": time.monotonic() - began, "args": vars(args),
               "targets": targets}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "ai-edit-latest.json").write_text(json.dumps(results, indent=1, default=str))
    section = render(results)
    print(section)
    if not args.no_readme:
        write_readme(section)


if __name__ == "__main__":
    asyncio.run(main())
