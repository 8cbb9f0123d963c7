"""Hostile code in the local sandbox, each case with its expected outcome."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

from execution import status as st
from execution.backend import ExecutionRequest, ExecutionResult
from execution.local import LocalBackend
from execution.sandbox import Limits
from tests.execution.procs import processes_of

REPO = Path(__file__).resolve().parents[2]



async def run(
    backend: LocalBackend,
    language: str,
    source: str,
    *,
    stdin: str = "",
    workdir: Path | None = None,
    owner: str = "test-project",
    **limits: float,
) -> ExecutionResult:
    base = Limits.default(backend.config)
    chunks: list[tuple[str, str]] = []

    async def sink(stream: str, text: str) -> None:
        chunks.append((stream, text))

    request = ExecutionRequest(
        language=language,
        source=source,
        stdin=stdin,
        limits=replace(base, **limits),
        workdir=workdir,
        owner_key=owner,
    )
    result = await backend.execute(request, sink)
    streamed = "".join(text for stream, text in chunks if stream == "stdout")
    assert streamed == result.stdout
    return result


async def test_runs_as_an_unprivileged_uid_with_nproc_in_force(local_backend: LocalBackend) -> None:
    result = await run(local_backend, "bash", "id -u; id -g; ulimit -u")
    uid, gid, nproc = result.stdout.split()
    assert result.status_id == st.ACCEPTED
    assert uid != "0" and gid != "0"
    assert nproc == "32"
    assert local_backend.health()["limit_mechanism"] in {"rlimit", "cgroup2"}


async def test_fork_bomb_is_contained(local_backend: LocalBackend) -> None:
    started = time.monotonic()
    # The shell keeps one child (forked before the bomb) to wait for: with a bare `wait` it
    # could exit before the bomb reached the limit, and the teardown would hide the errors.
    bomb = "sleep 2 & keeper=$!\n:(){ :|:& };:\nwait $keeper"
    result = await run(local_backend, "bash", bomb, wall_time_s=4)
    assert time.monotonic() - started < 10
    assert "Resource temporarily unavailable" in result.stderr
    uid = local_backend.sandbox.identity_for(local_backend.uids.slot("test-project")).uid
    if uid is not None:
        # The kernel tears the PID namespace down asynchronously: poll with a deadline.
        deadline = time.monotonic() + 5
        while processes_of(uid) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        assert processes_of(uid) == []
    after = await run(local_backend, "bash", "echo still alive")
    assert after.status_id == st.ACCEPTED and after.stdout == "still alive\n"


async def test_fork_bomb_hits_the_process_limit(local_backend: LocalBackend) -> None:
    code = "import os\nn=0\ntry:\n    while True:\n        if os.fork()==0:\n" \
           "            import time; time.sleep(30)\n        n+=1\nexcept OSError as e:\n" \
           "    print('blocked', n, e.errno)\n"
    result = await run(local_backend, "python", code, wall_time_s=3)
    assert result.stdout.startswith("blocked"), result
    forked = int(result.stdout.split()[1])
    assert forked < 32


async def test_infinite_loop_is_time_limit_exceeded(local_backend: LocalBackend) -> None:
    started = time.monotonic()
    result = await run(local_backend, "python", "while True: pass", cpu_time_s=1, wall_time_s=3)
    assert result.status_id == st.TIME_LIMIT_EXCEEDED
    assert time.monotonic() - started < 6


async def test_sleeping_past_the_wall_time_is_time_limit_exceeded(
    local_backend: LocalBackend,
) -> None:
    result = await run(local_backend, "bash", "sleep 100", wall_time_s=1)
    assert result.status_id == st.TIME_LIMIT_EXCEEDED


async def test_memory_hog_fails_without_hurting_the_host(local_backend: LocalBackend) -> None:
    code = "x = bytearray(1024 * 1024 * 1024)\nprint('allocated')"
    result = await run(local_backend, "python", code, memory_kb=128 * 1024)
    assert result.status_id == st.MEMORY_LIMIT_EXCEEDED, result
    assert result.message == "memory limit exceeded (128 MiB)"
    assert "MemoryError" in result.stderr
    assert "allocated" not in result.stdout


async def test_memory_limit_is_a_memory_status_in_every_runtime(
    local_backend: LocalBackend,
) -> None:
    """RLIMIT_DATA makes the allocation fail; each runtime dies its own way (exit 1,
    SIGABRT, SIGTRAP...) and says so on stderr: all of them are a memory limit."""
    cases = [
        ("python", "x = []\nwhile True: x.append(bytearray(8 << 20))"),
        ("cpp", "#include <vector>\nint main(){ std::vector<char> v(1UL << 31, 1);"
                " return v[7]; }"),
        ("bash", "x=a; while true; do x=$x$x; done"),
        ("javascript", "const a = []; for (;;) a.push(Buffer.alloc(32 * 1024 * 1024, 1))"),
    ]
    results = await asyncio.gather(*(
        run(local_backend, lang, src, memory_kb=128 * 1024, cpu_time_s=5, wall_time_s=15,
            owner=f"mem-{lang}")
        for lang, src in cases
    ))
    for (lang, _), result in zip(cases, results, strict=True):
        assert result.status_id == st.MEMORY_LIMIT_EXCEEDED, (lang, result)
    # A program that exits cleanly after printing the same words is not out of memory.
    fine = await run(local_backend, "python", "import sys; print('MemoryError', file=sys.stderr)")
    assert fine.status_id == st.ACCEPTED, fine


async def test_cpu_of_a_run_stopped_at_the_wall_clock_is_counted(
    local_backend: LocalBackend,
) -> None:
    """The busy loop prints the CPU time it has used so far; the record holds at least the
    last figure, whether the loop is the program or a grandchild (bash -> python)."""
    loop = ("import time\nlast = 0.0\nwhile True:\n    t = time.process_time()\n"
            "    if t - last >= 0.05:\n        print(\"%.3f\" % t, flush=True)\n        last = t\n")
    direct, nested = await asyncio.gather(
        run(local_backend, "python", loop, cpu_time_s=10, wall_time_s=2, owner="cpu-direct"),
        run(local_backend, "bash", f"python3 -c '{loop}'\ntrue", cpu_time_s=10,
            wall_time_s=2, owner="cpu-nested"),
    )
    for result in (direct, nested):
        assert result.status_id == st.TIME_LIMIT_EXCEEDED, result
        used = result.stdout.split()
        assert used, result  # the loop got some CPU and said so
        assert result.time_ms is not None and result.time_ms >= float(used[-1]) * 1000, (
            result.time_ms, used[-1],
        )


async def test_memory_limit_does_not_break_node(local_backend: LocalBackend) -> None:
    ok = await run(local_backend, "javascript", "console.log(1+1)", memory_kb=256 * 1024)
    assert ok.status_id == st.ACCEPTED and ok.stdout == "2\n", ok
    hog = "const a = []; for (;;) a.push(Buffer.alloc(32 * 1024 * 1024, 1))"
    result = await run(local_backend, "javascript", hog, memory_kb=256 * 1024,
                       cpu_time_s=5, wall_time_s=15)
    assert result.status_id not in {st.ACCEPTED, st.TIME_LIMIT_EXCEEDED}, result


async def test_disk_filler_is_stopped_by_the_file_size_limit(
    local_backend: LocalBackend, exec_root: Path
) -> None:
    workdir = exec_root / "workspaces" / "filler"
    workdir.mkdir(parents=True)
    uid = local_backend.sandbox.identity_for(local_backend.uids.slot("test-project")).uid
    if uid is not None:
        os.chown(workdir, uid, uid)
    result = await run(
        local_backend, "bash", "head -c 50000000 /dev/zero > /workspace/big; echo done",
        workdir=workdir,
    )
    assert (workdir / "big").stat().st_size <= 1024 * 1024
    assert "File size limit exceeded" in result.stderr or result.stdout == "done\n"
    writer = '#include <stdio.h>\nint main(){FILE*f=fopen("/workspace/big2","w");' \
             'for(int i=0;i<5000;i++) fwrite("0123456789abcdef0123456789abcdef",1,1000,f);' \
             'fclose(f); puts("wrote"); }'
    direct = await run(local_backend, "c", writer, workdir=workdir)
    assert direct.status_id == st.RUNTIME_ERROR_SIGXFSZ, direct
    assert direct.stdout == ""
    # Python ignores SIGXFSZ: it gets EFBIG instead and fails with NZEC.
    python = await run(
        local_backend, "python", "open('/workspace/big3','wb').write(b'x'*5000000)",
        workdir=workdir,
    )
    assert python.status_id == st.RUNTIME_ERROR_NZEC and "File too large" in python.stderr
    tmp = await run(
        local_backend, "bash",
        "for i in $(seq 1 200); do head -c 900000 /dev/zero > /tmp/f$i || exit 9; done",
    )
    assert tmp.status_id == st.RUNTIME_ERROR_NZEC and tmp.exit_code == 9, tmp


async def test_cannot_read_secrets_or_the_server_files(local_backend: LocalBackend) -> None:
    code = f"""
for path in ["/etc/shadow", "/etc/passwd", "{REPO}/server/settings.py", "/root/.bashrc",
             "{REPO}/.venv/bin/python", "/proc/1/root/etc/shadow"]:
    try:
        open(path, "rb").read(10)
        print("READ", path)
    except OSError as exc:
        print("denied", path, type(exc).__name__)
"""
    result = await run(local_backend, "python", code)
    assert result.status_id == st.ACCEPTED, result
    assert "READ" not in result.stdout, result.stdout
    assert result.stdout.count("denied") == 6


def test_launcher_environment_does_not_leak_into_the_sandbox(exec_config_json: str) -> None:
    """The server's process has JWT_SECRET and DATABASE_URL; PID 1 and the program see
    neither (bubblewrap itself is started with an empty environment)."""
    probe = f"""
import asyncio, json
from pathlib import Path
from execution.config import ExecutionConfig
from execution.local import LocalBackend
from execution.backend import ExecutionRequest
from execution.sandbox import Limits
from tests.execution.procs import processes_of

async def main():
    fields = json.loads({exec_config_json!r})
    fields["workdir_root"] = Path(fields["workdir_root"])
    fields["storage_root"] = Path(fields["storage_root"])
    cfg = ExecutionConfig(**fields)
    backend = LocalBackend(cfg)
    await backend.start()
    req = ExecutionRequest("bash", "tr '\\\\0' '\\\\n' < /proc/1/environ; echo ---; env; "
        "for p in /proc/[0-9]*; do cat $p/environ 2>/dev/null | tr '\\\\0' '\\\\n'; done",
        "", Limits.default(cfg))
    async def sink(stream, text):
        pass
    result = await backend.execute(req, sink)
    print(json.dumps([result.status_id, result.stdout]))
    await backend.close()

asyncio.run(main())
"""
    env = {
        **os.environ,
        "JWT_SECRET": "super-secret-jwt-value-123",
        "DATABASE_URL": "postgresql://leak:leak@127.0.0.1/leak",
    }
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=REPO,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    status_id, stdout = json.loads(out.stdout.strip().splitlines()[-1])
    assert status_id == st.ACCEPTED
    assert "PATH=" in stdout
    assert "super-secret-jwt-value-123" not in stdout
    assert "leak" not in stdout


async def test_network_is_unreachable(local_backend: LocalBackend) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    try:
        code = f"""
import socket
for host in ["127.0.0.1", "1.1.1.1"]:
    try:
        socket.create_connection((host, {port}), timeout=1)
        print("CONNECTED", host)
    except OSError as exc:
        print("failed", host, type(exc).__name__)
"""
        result = await run(local_backend, "python", code)
    finally:
        listener.close()
    assert "CONNECTED" not in result.stdout, result.stdout
    assert result.stdout.count("failed") == 2


async def test_cannot_write_outside_the_workdir(
    local_backend: LocalBackend, exec_root: Path
) -> None:
    workdir = exec_root / "workspaces" / "writer"
    workdir.mkdir(parents=True)
    uid = local_backend.sandbox.identity_for(local_backend.uids.slot("test-project")).uid
    if uid is not None:
        os.chown(workdir, uid, uid)
    code = f"""
for path in ["/usr/evil", "/etc/evil", "/evil", "{exec_root}/evil", "/workspace/ok"]:
    try:
        open(path, "w").write("x")
        print("wrote", path)
    except OSError as exc:
        print("denied", path)
"""
    result = await run(local_backend, "python", code, workdir=workdir)
    assert result.stdout.splitlines() == [
        "denied /usr/evil", "denied /etc/evil", "denied /evil", f"denied {exec_root}/evil",
        "wrote /workspace/ok",
    ]
    assert (workdir / "ok").read_text() == "x"
    assert not (exec_root / "evil").exists()


async def test_output_flood_is_capped(local_backend: LocalBackend) -> None:
    started = time.monotonic()
    result = await run(local_backend, "bash", "yes", output_bytes=64 * 1024)
    assert result.status_id == st.RUNTIME_ERROR_SIGXFSZ
    assert result.message == "output limit exceeded"
    assert len(result.stdout) == 64 * 1024
    assert time.monotonic() - started < 5


async def test_process_ignoring_sigterm_is_killed(local_backend: LocalBackend) -> None:
    code = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n" \
           "print('ready', flush=True)\nwhile True: time.sleep(0.1)"
    started = time.monotonic()
    result = await run(local_backend, "python", code, wall_time_s=1)
    assert result.status_id == st.TIME_LIMIT_EXCEEDED
    assert result.stdout == "ready\n"
    assert time.monotonic() - started < 5


async def test_background_process_does_not_outlive_the_run(
    local_backend: LocalBackend, exec_root: Path
) -> None:
    workdir = exec_root / "workspaces" / "bg"
    workdir.mkdir(parents=True)
    uid = local_backend.sandbox.identity_for(local_backend.uids.slot("test-project")).uid
    if uid is not None:
        os.chown(workdir, uid, uid)
    code = "(trap '' TERM HUP; while true; do date +%s%N > /workspace/tick; sleep 0.05; done) &\n" \
           "disown; echo started"
    result = await run(local_backend, "bash", code, workdir=workdir)
    assert result.status_id == st.ACCEPTED
    await asyncio.sleep(0.3)
    first = (workdir / "tick").read_text() if (workdir / "tick").exists() else ""
    await asyncio.sleep(0.3)
    second = (workdir / "tick").read_text() if (workdir / "tick").exists() else ""
    assert first == second


async def test_languages_and_runtime_error_statuses(local_backend: LocalBackend) -> None:
    langs = {lang["id"] for lang in await local_backend.languages()}
    assert {"python", "javascript", "c", "cpp", "bash"} <= langs
    cases = [
        ("python", "print(input()[::-1])", "olleh", st.ACCEPTED, "hello\n"),
        ("javascript", "process.stdout.write('js')", "", st.ACCEPTED, "js"),
        ("c", '#include <stdio.h>\nint main(){printf("c\\n");}', "", st.ACCEPTED, "c\n"),
        ("cpp", "#include <iostream>\nint main(){std::cout<<\"cpp\";}", "", st.ACCEPTED, "cpp"),
        ("bash", "read x; echo $((x*2))", "21", st.ACCEPTED, "42\n"),
        ("c", "int main(){ return 3; }", "", st.RUNTIME_ERROR_NZEC, ""),
        ("c", "int main(){ int *p = 0; return *p; }", "", st.RUNTIME_ERROR_SIGSEGV, ""),
        ("c", "#include <stdlib.h>\nint main(){ abort(); }", "", st.RUNTIME_ERROR_SIGABRT, ""),
        ("c", "int main(int c, char**v){ return 7 / (c - 1); }", "", st.RUNTIME_ERROR_SIGFPE,
         ""),
        ("c", "int main(){ syntax error }", "", st.COMPILATION_ERROR, ""),
    ]
    results = await asyncio.gather(
        *(
            run(local_backend, lang, src, stdin=stdin, owner=f"p{i}")
            for i, (lang, src, stdin, _, _) in enumerate(cases)
        )
    )
    for (lang, src, _, expected, stdout), result in zip(cases, results, strict=True):
        assert result.status_id == expected, (lang, src, result)
        if expected == st.ACCEPTED:
            assert result.stdout == stdout
            assert result.memory_kb and result.memory_kb > 0
        if expected == st.COMPILATION_ERROR:
            assert result.compile_output and "error" in result.compile_output


async def test_java_when_present(local_backend: LocalBackend) -> None:
    langs = {lang["id"] for lang in await local_backend.languages()}
    if "java" not in langs:
        assert not Path("/usr/bin/javac").exists()
        return
    code = "public class Main { public static void main(String[] a) " \
           "{ System.out.println(\"java\"); } }"
    result = await run(local_backend, "java", code, wall_time_s=10, cpu_time_s=10,
                       memory_kb=512 * 1024)
    assert result.status_id == st.ACCEPTED, result
    assert result.stdout == "java\n"


def _command_lines_with(marker: bytes) -> list[bytes]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if marker in cmdline:
                found.append(cmdline)
    return found


async def test_secrets_never_reach_a_command_line(local_backend: LocalBackend) -> None:
    """/proc/<pid>/cmdline is readable by every process of the host: bubblewrap gets the
    program's environment through a pipe (--args), not as --setenv arguments."""
    sandbox = local_backend.sandbox
    secret = f"s3cr3t-{os.urandom(8).hex()}"
    marker = f"marker-{os.urandom(8).hex()}"
    running = asyncio.create_task(sandbox.run(
        ["/bin/sh", "-c", f'echo "$API_TOKEN"; sleep 1.5 # {marker}'],
        binds=[], limits=Limits.default(local_backend.config),
        identity=sandbox.identity_for(0), env={"API_TOKEN": secret}, cwd="/",
    ))
    deadline = time.monotonic() + 5
    while not _command_lines_with(marker.encode()) and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    seen = _command_lines_with(marker.encode())
    leaked = _command_lines_with(secret.encode())
    result = await running
    assert seen, "the sandbox never showed up in /proc"
    assert leaked == []
    assert any(b"--args" in line for line in seen)
    assert result.exit_code == 0 and result.stdout.decode().strip() == secret


def test_an_environment_that_cannot_be_passed_is_refused() -> None:
    from execution.sandbox import environment_args

    assert environment_args({"A": "1"}).split(b"\0")[-4:] == [b"--setenv", b"A", b"1", b""]
    for bad in ({"A=B": "x"}, {"": "x"}, {"A": "x\0y"}):
        with pytest.raises(ValueError, match="cannot be passed"):
            environment_args(bad)
