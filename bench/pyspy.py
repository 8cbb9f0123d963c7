"""Sampling profiles of our server under load (py-spy), summarised as text.

py-spy samples the server without pausing it (``--nonblocking``), pinned to the load
generator's core; the figures of a profiled run are not used in the tables.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from procs import pinned_cmd

FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::\d+)?\)$")


def py_spy() -> str | None:
    candidate = Path(sys.executable).parent / "py-spy"
    if candidate.exists():
        return str(candidate)
    return shutil.which("py-spy")


def start(pid: int, seconds: float, out: Path, core: int) -> subprocess.Popen[bytes] | None:
    binary = py_spy()
    if binary is None:
        return None
    # BENCH_PYSPY_NATIVE=1: C frames too (uvloop, pycrdt, asyncpg's protocol), at the cost
    # of pausing the server for each sample (py-spy cannot unwind native stacks otherwise).
    mode = ["--native"] if os.environ.get("BENCH_PYSPY_NATIVE") == "1" else ["--nonblocking"]
    cmd = [binary, "record", "--pid", str(pid), "--rate", "200", "--duration",
           str(max(1, int(seconds))), "--format", "raw", *mode, "--output", str(out)]
    return subprocess.Popen(
        pinned_cmd(cmd, core), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def short(frame: str) -> str:
    match = FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match.group("file")
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{match.group('func')} ({path})"


def summarize(raw: Path, top: int = 30) -> str:
    """Self and inclusive sample shares per function from py-spy's collapsed stacks."""
    self_counts: Counter[str] = Counter()
    incl_counts: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [short(f) for f in stack.split(";") if f]
        if not frames:
            continue
        total += count
        self_counts[frames[-1]] += count
        for frame in set(frames):
            incl_counts[frame] += count
    if not total:
        return "no samples\n"
    lines = [f"samples: {total}", "", "self time (top):"]
    lines += [f"  {n / total * 100:5.1f}%  {f}" for f, n in self_counts.most_common(top)]
    lines += ["", "inclusive time (top):"]
    lines += [f"  {n / total * 100:5.1f}%  {f}" for f, n in incl_counts.most_common(top + 20)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(summarize(Path(sys.argv[1])))
