"""scripts/system-deps.sh: what `make run` and `make test` install on a fresh Debian machine.

Nothing is removed from this machine: a package looks missing when ``BWRAP_PATH`` or
``CHROMIUM_PATH`` names a file that does not exist, ``apt-get`` is a stub first on PATH
that records its calls (and "installs" bubblewrap by creating that file), and the not-root
branch runs as ``nobody`` through runuser. The suite runs as root, as CI does.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "system-deps.sh"
STUB = """#!/bin/sh
echo "$@" >> "$APT_LOG"
if [ "$1" = install ]; then
  for package in "$@"; do
    if [ "$package" = bubblewrap ]; then
      printf '#!/bin/sh\\n' > "$FAKE_BWRAP"; chmod +x "$FAKE_BWRAP"
    fi
  done
fi
"""


def run(
    *argv: str, env: dict[str, str], as_nobody: bool = False
) -> subprocess.CompletedProcess[str]:
    command = [*(["runuser", "-u", "nobody", "--"] if as_nobody else []), *argv]
    # Not the variables of the `make test` this suite may run under: a nested make would
    # print "Entering directory" lines and inherit its flags.
    outer = {k: v for k, v in os.environ.items() if k not in {"MAKELEVEL", "MAKEFLAGS", "MFLAGS"}}
    return subprocess.run(command, env={**outer, **env}, capture_output=True, text=True,
                          timeout=120, cwd=REPO)


def stub_apt(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "stub-bin"
    bin_dir.mkdir()
    apt = bin_dir / "apt-get"
    apt.write_text(STUB)
    apt.chmod(0o755)
    return {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "APT_LOG": str(tmp_path / "apt.log"),
        "FAKE_BWRAP": str(tmp_path / "bwrap"),
        "BWRAP_PATH": str(tmp_path / "bwrap"),
    }


def apt_calls(env: dict[str, str]) -> list[str]:
    log = Path(env["APT_LOG"])
    return log.read_text().splitlines() if log.exists() else []


def named_packages(stderr: str, purpose: str) -> list[str]:
    match = re.search(rf"missing Debian packages for `make {purpose}`: (.+)", stderr)
    assert match, stderr
    return match[1].split()


def test_nothing_missing_installs_nothing(tmp_path: Path) -> None:
    env = stub_apt(tmp_path)
    env["BWRAP_PATH"] = "bwrap"  # the real one
    for purpose in ("run", "test"):
        done = run(str(SCRIPT), purpose, env=env)
        assert (done.returncode, done.stderr) == (0, "")
    assert apt_calls(env) == []


def test_root_installs_what_is_missing_with_apt_get(tmp_path: Path) -> None:
    env = stub_apt(tmp_path)
    done = run(str(SCRIPT), "test", env=env)
    assert done.returncode == 0, done.stderr
    assert "system-deps: installing bubblewrap" in done.stderr
    assert apt_calls(env) == ["update -qq", "install -y -qq bubblewrap"]


def test_root_fails_test_when_apt_get_did_not_install_it(tmp_path: Path) -> None:
    env = stub_apt(tmp_path)
    env["BWRAP_PATH"] = str(tmp_path / "elsewhere" / "bwrap")  # the stub puts it elsewhere
    done = run(str(SCRIPT), "test", env=env)
    assert done.returncode == 1
    assert "still missing after apt-get install: bubblewrap" in done.stderr
    assert run(str(SCRIPT), "run", env=env).returncode == 0


def test_not_root_names_the_packages_and_the_command(tmp_path: Path) -> None:
    env = {"BWRAP_PATH": "/nonexistent/bwrap", "CHROMIUM_PATH": "/nonexistent/chromium"}
    done = run(str(SCRIPT), "test", env=env, as_nobody=True)
    assert done.returncode == 1
    packages = named_packages(done.stderr, "test")
    assert {"bubblewrap", "chromium"} <= set(packages)
    assert f"as root:  apt-get update && apt-get install -y {' '.join(packages)}" in done.stderr

    done = run(str(SCRIPT), "run", env=env, as_nobody=True)
    assert done.returncode == 0
    packages = named_packages(done.stderr, "run")
    assert "bubblewrap" in packages and "chromium" not in packages
    assert "continuing; /healthz reports what is unavailable" in done.stderr


def test_make_test_stops_and_make_run_checks_for_itself(tmp_path: Path) -> None:
    env = {"BWRAP_PATH": "/nonexistent/bwrap"}
    done = run("make", "--no-print-directory", "test", env=env, as_nobody=True)
    assert done.returncode != 0
    assert "missing Debian packages for `make test`" in done.stderr
    assert "pytest" not in done.stdout  # stopped before anything else ran
    planned = run("make", "-n", "run", env={}).stdout.splitlines()
    assert planned[0].endswith("scripts/system-deps.sh run")
    assert planned[-1].endswith("-m server serve")
    planned = run("make", "-n", "test", env={}).stdout.splitlines()
    assert planned[0].endswith("scripts/system-deps.sh test")
    ci = (REPO / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == "make test"
