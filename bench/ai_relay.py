"""AI relay benchmark: what the chat hub adds between the provider's stream and the watchers.

    .venv/bin/python bench/ai_relay.py [--watchers 1,10,50] [--deltas 200] [--interval-ms 10]

One run starts: a fake OpenAI-compatible provider (own process) whose every delta carries its
send time (``time.time_ns()``); an embedded PostgreSQL; the app (``python -m server serve``,
own process) pointed at the fake. For each watcher count W, W WebSockets watch one
conversation, one of them asks, and at the same time this process reads a *raw* stream
straight from the provider. Latency of a delta = receive time - the provider's send time, on
one machine's clock, so the relay's overhead is the watchers' latency minus the raw stream's.
Results: bench/results/ai-relay-latest.json and a section of bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ai.sse import SSEParser  # noqa: E402
from persistence.db import Database  # noqa: E402
from persistence.migrate import migrate_dsn  # noqa: E402
from server.auth.tokens import issue_access_token  # noqa: E402
from server.settings import Settings  # noqa: E402
from tests.support import factories  # noqa: E402
from tests.support.net import free_port  # noqa: E402
from tests.support.servers import ProcessServer, server_env  # noqa: E402

RESULTS = REPO / "bench" / "results"
README = REPO / "bench" / "README.md"
START, END = "<!-- ai-relay:start -->", "<!-- ai-relay:end -->"
SECRET = "bench-secret-0123456789-0123456789-0123456789"


# -- the fake provider (runs in its own process) ------------------------------------------


def fake_provider(port: int, deltas: int, interval_s: float) -> None:
    async def completions(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        for _ in range(deltas):
            next_at += interval_s
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            chunk = {"model": "bench", "choices": [
                {"index": 0, "delta": {"content": f"<{time.time_ns()}>"}, "finish_reason": None}]}
            await resp.write(f"data: {json.dumps(chunk)}\n\n".encode())
        end = {"model": "bench", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        usage = {"model": "bench", "choices": [],
                 "usage": {"prompt_tokens": 10, "completion_tokens": deltas}}
        await resp.write(f"data: {json.dumps(end)}\n\ndata: {json.dumps(usage)}\n\n".encode())
        await resp.write(b"data: [DONE]\n\n")
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    web.run_app(app, host="127.0.0.1", port=port, print=None, handle_signals=True)


# -- measuring ------------------------------------------------------------------------------


def stamps(text: str) -> list[int]:
    return [int(part) for part in text.replace(">", "").split("<") if part]


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


class Track:
    """Per-stream: when the request went out, and (receive, send) times of each delta."""

    def __init__(self) -> None:
        self.asked_ns = 0
        self.latencies_ms: list[float] = []
        self.received_ns: list[int] = []

    def delta(self, text: str) -> None:
        now = time.time_ns()
        for sent in stamps(text):
            self.latencies_ms.append((now - sent) / 1e6)
            self.received_ns.append(now)

    @property
    def first_ms(self) -> float:
        return (self.received_ns[0] - self.asked_ns) / 1e6 if self.received_ns else float("nan")

    @property
    def rate(self) -> float:
        if len(self.received_ns) < 2:
            return float("nan")
        span = (self.received_ns[-1] - self.received_ns[0]) / 1e9
        return (len(self.received_ns) - 1) / span if span else float("nan")


async def raw_stream(session: aiohttp.ClientSession, url: str, track: Track) -> None:
    body = {"model": "bench", "messages": [{"role": "user", "content": "raw"}],
            "stream": True, "stream_options": {"include_usage": True}}
    track.asked_ns = time.time_ns()
    parser = SSEParser()
    async with session.post(url + "/v1/chat/completions", json=body) as resp:
        async for chunk in resp.content.iter_any():
            for event in parser.feed(chunk):
                if event.data.strip() == "[DONE]":
                    return
                data = json.loads(event.data)
                for choice in data.get("choices") or ():
                    if choice["delta"].get("content"):
                        track.delta(choice["delta"]["content"])


async def watch(ws: aiohttp.ClientWebSocketResponse, track: Track) -> None:
    async for msg in ws:
        event = json.loads(msg.data)
        if event["type"] == "delta" and not event.get("catch_up"):
            track.delta(event["text"])
        elif event["type"] in ("done", "error"):
            if event["type"] == "error":
                print("error:", event, file=sys.stderr)
            return


def cpu_s(pid: int) -> float:
    """utime + stime of a process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def client_process(ws_url: str, conversation: str, tokens: list[str]) -> None:
    """Watchers in a process of their own: 'ready' once connected, then waits for
    '<asked_ns> <ask 0|1>' on stdin, and prints its tracks as JSON when the reply is done."""
    async with aiohttp.ClientSession() as session:
        sockets = [
            await session.ws_connect(f"{ws_url}/ws/conversations/{conversation}?token={t}",
                                     max_msg_size=0)
            for t in tokens
        ]
        tracks = [Track() for _ in sockets]
        print("ready", flush=True)
        line = await asyncio.to_thread(sys.stdin.readline)
        asked_s, ask = line.split()
        tasks = [asyncio.create_task(watch(ws, tr))
                 for ws, tr in zip(sockets, tracks, strict=True)]
        if ask == "1":
            await sockets[0].send_str(json.dumps({"type": "user_message", "content": "go"}))
        await asyncio.gather(*tasks)
        for ws in sockets:
            await ws.close()
    for track in tracks:
        track.asked_ns = int(asked_s)
    print(json.dumps([{"lat": t.latencies_ms, "first_ms": t.first_ms, "rate": t.rate}
                      for t in tracks]), flush=True)


async def one_round(
    app_ws: str, provider: str, conversation: uuid.UUID, tokens: list[str], server_pid: int,
    client_procs: int, idle_cpu_per_s: float,
) -> dict[str, Any]:
    groups = [tokens[i::client_procs] for i in range(min(client_procs, len(tokens)))]
    procs = []
    for group in groups:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--client", app_ws, str(conversation), ",".join(group),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )
        assert proc.stdout is not None
        assert (await proc.stdout.readline()).strip() == b"ready"
        procs.append(proc)
    raw = Track()
    cpu_before = cpu_s(server_pid)
    started = time.monotonic()
    asked = time.time_ns()
    for index, proc in enumerate(procs):
        assert proc.stdin is not None
        proc.stdin.write(f"{asked} {1 if index == 0 else 0}\n".encode())
        await proc.stdin.drain()
    async with aiohttp.ClientSession() as session:
        await raw_stream(session, provider, raw)
    outputs = [json.loads((await proc.communicate())[0]) for proc in procs]
    # Less what the idle server burns anyway (other hubs' timers), per second of the round.
    server_cpu = cpu_s(server_pid) - cpu_before - idle_cpu_per_s * (time.monotonic() - started)
    tracks = [t for out in outputs for t in out]
    relay_lat = [v for t in tracks for v in t["lat"]]
    delivered = len(relay_lat)
    return {
        "watchers": len(tokens),
        "client_processes": len(procs),
        "server_cpu_s": server_cpu,
        "server_idle_cpu_per_s": idle_cpu_per_s,
        "server_cpu_us_per_delivered_delta": server_cpu / delivered * 1e6 if delivered else None,
        "deltas_per_watcher": statistics.mean(len(t["lat"]) for t in tracks),
        "raw": {"first_delta_ms": raw.first_ms, "deltas_per_s": raw.rate,
                "p50_ms": pct(raw.latencies_ms, 50), "p99_ms": pct(raw.latencies_ms, 99)},
        "relay": {"first_delta_ms": statistics.median(t["first_ms"] for t in tracks),
                  "deltas_per_s": statistics.median(t["rate"] for t in tracks),
                  "p50_ms": pct(relay_lat, 50), "p99_ms": pct(relay_lat, 99)},
        "overhead_p50_ms": pct(relay_lat, 50) - pct(raw.latencies_ms, 50),
        "overhead_p99_ms": pct(relay_lat, 99) - pct(raw.latencies_ms, 99),
    }


async def setup_database(dsn: str, people: int) -> tuple[uuid.UUID, list[uuid.UUID]]:
    await migrate_dsn(dsn)
    db = await Database.connect(dsn, min_size=1, max_size=2)
    try:
        async with db.service() as conn:
            owner = await factories.create_user(conn)
            workspace = await factories.create_workspace(conn, owner)
            users = [owner]
            for _ in range(people - 1):
                user = await factories.create_user(conn)
                await factories.add_member(conn, workspace, user, "viewer")
                users.append(user)
            project = await factories.create_project(conn, workspace)
            conversation = await factories.create_conversation(conn, project, owner, "bench")
            # Unlimited allowance for the bench user: a plan without an ai_tokens limit.
            await conn.execute(
                "update public.subscription_plans set limits = limits - 'ai_tokens' "
                "where slug = 'free'")
    finally:
        await db.close()
    return conversation, users


def render(results: dict[str, Any]) -> str:
    lines = [
        START,
        "## AI relay (bench/ai_relay.py)",
        "",
        f"{results['deltas']} deltas every {results['interval_ms']} ms from a fake provider "
        f"(each watcher count {results['repeat']} rounds, the median round shown) "
        "(own process); the app in its own process; latency = receive time - provider send "
        "time. Raw = this process reading the provider directly, in the same round; the "
        f"watchers are spread over {results['client_procs']} client processes.",
        "",
        "| watchers | raw first delta ms | relay first delta ms | raw deltas/s | relay deltas/s "
        "| raw p50 / p99 ms | relay p50 / p99 ms | overhead p50 / p99 ms "
        "| server CPU µs per delivered delta | p99 overhead of each round ms |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in results["rounds"]:
        lines.append(
            f"| {r['watchers']} | {r['raw']['first_delta_ms']:.1f} | "
            f"{r['relay']['first_delta_ms']:.1f} | {r['raw']['deltas_per_s']:.0f} | "
            f"{r['relay']['deltas_per_s']:.0f} | {r['raw']['p50_ms']:.2f} / "
            f"{r['raw']['p99_ms']:.2f} | {r['relay']['p50_ms']:.2f} / "
            f"{r['relay']['p99_ms']:.2f} | {r['overhead_p50_ms']:.2f} / "
            f"{r['overhead_p99_ms']:.2f} | {r['server_cpu_us_per_delivered_delta']:.0f} | "
            + ", ".join(f"{v:.1f}" for v in r["all_overhead_p99_ms"]) + " |"
        )
    lines += [
        "",
        f"Target: relay overhead < 5 ms at p99. Measured {results['measured_at']} on "
        f"{results['cpus']} CPUs with a 1-minute load average of "
        f"{results['load_average_1m']} (other work shares the machine, and the watcher "
        "processes share its cores with the server: latency percentiles move a lot between "
        "runs; CPU per delivered delta is the steadier figure).",
        "Relay first delta includes what happens before the provider call: plan allowance "
        "and history (one query), job and messages (one statement).",
        END,
    ]
    return "\n".join(lines)


def write_readme(block: str) -> None:
    text = README.read_text() if README.exists() else "# Benchmark\n"
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + block + rest.split(END, 1)[1]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    README.write_text(text)


async def main(args: argparse.Namespace) -> dict[str, Any]:
    from persistence.embedded import start_embedded_postgres

    counts = [int(c) for c in args.watchers.split(",")]
    tmp = Path(tempfile.mkdtemp(prefix="ai-relay-"))
    dsn, pg = start_embedded_postgres(tmp / "pg", cleanup="delete")
    provider_port = free_port()
    provider = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--fake-provider", str(provider_port),
        "--deltas", str(args.deltas), "--interval-ms", str(args.interval_ms),
    )
    provider_url = f"http://127.0.0.1:{provider_port}"
    server: ProcessServer | None = None
    try:
        conversation, users = await setup_database(dsn, max(counts))
        settings = Settings(database_url=dsn, jwt_secret=SECRET, data_dir=tmp / "data")
        env = server_env(settings, {"AI_BASE_URL": provider_url, "AI_MODEL": "bench",
                                    "AI_API_KEY": "bench", "LOG_LEVEL": "warning"})
        server = ProcessServer(free_port(), env, tmp / "server.log")
        await server.start()
        tokens = [issue_access_token(SECRET, str(u), None) for u in users]
        assert server.proc is not None
        idle_before = cpu_s(server.proc.pid)
        await asyncio.sleep(3)
        idle_cpu_per_s = (cpu_s(server.proc.pid) - idle_before) / 3
        rounds = []
        for count in counts:
            assert server.proc is not None
            tries = []
            for _ in range(args.repeat):
                result = await one_round(server.ws_url, provider_url, conversation,
                                         tokens[:count], server.proc.pid, args.client_procs,
                                         idle_cpu_per_s)
                print(json.dumps(result), flush=True)
                tries.append(result)
            # The machine is shared: report the round with the median p99 overhead.
            tries.sort(key=lambda r: r["overhead_p99_ms"])
            chosen = dict(tries[len(tries) // 2])
            chosen["all_overhead_p99_ms"] = [r["overhead_p99_ms"] for r in tries]
            rounds.append(chosen)
    finally:
        if server is not None:
            await server.terminate()
        provider.terminate()
        await provider.wait()
        pg.cleanup()
    return {"deltas": args.deltas, "interval_ms": args.interval_ms, "rounds": rounds,
            "client_procs": args.client_procs, "repeat": args.repeat,
            "load_average_1m": round(os.getloadavg()[0], 1),
            "measured_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "cpus": os.cpu_count()}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--watchers", default="1,10,50")
    parser.add_argument("--deltas", type=int, default=200)
    parser.add_argument("--interval-ms", type=float, default=10.0)
    parser.add_argument("--fake-provider", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--repeat", type=int, default=3,
                        help="rounds per watcher count; the median round is reported")
    parser.add_argument("--client-procs", type=int, default=2,
                        help="processes the watchers are spread over")
    parser.add_argument("--client", nargs=3, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--no-readme", action="store_true")
    parsed = parser.parse_args()
    if parsed.fake_provider is not None:
        fake_provider(parsed.fake_provider, parsed.deltas, parsed.interval_ms / 1000)
        sys.exit(0)
    if parsed.client is not None:
        url, conv, joined = parsed.client
        asyncio.run(client_process(url, conv, joined.split(",")))
        sys.exit(0)
    report = asyncio.run(main(parsed))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "ai-relay-latest.json").write_text(json.dumps(report, indent=2))
    if not parsed.no_readme:
        write_readme(render(report))
    print(render(report))
