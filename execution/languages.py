"""Languages the local sandbox can run: which toolchains are here, how to compile and run.

Commands are argv lists seen from inside the sandbox: the source is at ``{src}``, build
products go to ``/build`` (a per-execution scratch directory), the project is at
``/workspace``. Java, Go and Rust are offered only when their toolchains are installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path

from execution.sandbox import BUILD, Bind

RUST_ROOT = "/opt/rust"
GO_ROOT = "/opt/go"


@dataclass(frozen=True)
class Language:
    id: str
    name: str
    source_name: str  # file name used when the request carries source code
    extensions: tuple[str, ...]
    run: tuple[str, ...]
    compile: tuple[str, ...] | None = None
    env: dict[str, str] = field(default_factory=dict)
    version: str = ""
    binds: tuple[Bind, ...] = ()
    # Threads count against RLIMIT_NPROC: the JVM needs a few dozen of its own.
    min_processes: int = 0
    # Judge0 language names start with one of these ("Python (3.8.1)", "C++ (GCC 9.2.0)").
    judge0_prefixes: tuple[str, ...] = ()

    def command(self, template: tuple[str, ...], source: str) -> list[str]:
        stem = Path(source).stem
        return [part.format(src=source, stem=stem, build=BUILD) for part in template]

    def public(self) -> dict[str, object]:
        return {
            "id": self.id,
            "name": self.name,
            "version": self.version,
            "extensions": list(self.extensions),
            "compiled": self.compile is not None,
        }


BASE_LANGUAGES = (
    Language(
        "python", "Python", "main.py", (".py",), ("/usr/bin/python3", "{src}"),
        judge0_prefixes=("Python (3",),
    ),
    Language(
        "javascript", "JavaScript (Node.js)", "main.js", (".js", ".mjs", ".cjs"),
        ("/usr/bin/node", "{src}"), judge0_prefixes=("JavaScript (Node",),
    ),
    Language(
        "c", "C (GCC)", "main.c", (".c",), ("{build}/main",),
        compile=("/usr/bin/gcc", "-O2", "-pipe", "-o", "{build}/main", "{src}", "-lm"),
        judge0_prefixes=("C (GCC",),
    ),
    Language(
        "cpp", "C++ (GCC)", "main.cpp", (".cpp", ".cc", ".cxx"), ("{build}/main",),
        compile=("/usr/bin/g++", "-O2", "-pipe", "-std=c++17", "-o", "{build}/main", "{src}"),
        judge0_prefixes=("C++ (GCC",),
    ),
    Language(
        "bash", "Bash", "main.sh", (".sh", ".bash"), ("/bin/bash", "{src}"),
        judge0_prefixes=("Bash",),
    ),
)

JAVA = Language(
    "java", "Java (OpenJDK)", "Main.java", (".java",),
    ("/usr/bin/java", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "-XX:ActiveProcessorCount=1",
     "-cp", "{build}", "{stem}"),
    compile=("/usr/bin/javac", "-J-XX:+UseSerialGC", "-J-XX:TieredStopAtLevel=1",
             "-J-XX:ActiveProcessorCount=1",
             "-d", "{build}", "{src}"),
    judge0_prefixes=("Java (OpenJDK",),
    min_processes=128,
)
RUST = Language(
    "rust", "Rust", "main.rs", (".rs",), ("{build}/main",),
    compile=(f"{RUST_ROOT}/bin/rustc", "-O", "-o", "{build}/main", "{src}"),
    judge0_prefixes=("Rust",),
)
GO = Language(
    "go", "Go", "main.go", (".go",), ("{build}/main",),
    compile=(f"{GO_ROOT}/bin/go", "build", "-o", "{build}/main", "{src}"),
    env={"GOCACHE": "/tmp/gocache", "GOPATH": "/tmp/go", "GOROOT": GO_ROOT, "CGO_ENABLED": "0"},
    judge0_prefixes=("Go",),
)

VERSION_COMMANDS = {
    "python": ("/usr/bin/python3", "--version"),
    "javascript": ("/usr/bin/node", "--version"),
    "c": ("/usr/bin/gcc", "-dumpfullversion"),
    "cpp": ("/usr/bin/g++", "-dumpfullversion"),
    "bash": ("/bin/bash", "-c", "echo $BASH_VERSION"),
    "java": ("/usr/bin/javac", "-J-XX:+UseSerialGC", "-version"),
    "rust": (f"{RUST_ROOT}/bin/rustc", "--version"),
    "go": (f"{GO_ROOT}/bin/go", "version"),
}


def parse_version(language_id: str, output: str) -> str:
    lines = output.strip().splitlines()
    if not lines:
        return ""
    words = lines[0].split()
    if language_id in {"rust", "go"} and len(words) > 2:
        return words[1] if language_id == "rust" else words[2]
    return words[-1] if words else ""


@dataclass
class Toolchains:
    """What this machine can run (after a check inside the sandbox)."""

    languages: dict[str, Language]

    def by_extension(self, path: str) -> Language | None:
        suffix = Path(path).suffix.lower()
        for language in self.languages.values():
            if suffix in language.extensions:
                return language
        return None


def _sysroot(tool: str, args: list[str]) -> Path | None:
    path = shutil.which(tool)
    if path is None:
        return None
    try:
        out = subprocess.run([path, *args], capture_output=True, text=True, timeout=20,
                             env={"PATH": os.environ.get("PATH", ""), "HOME": str(Path.home())})
    except (OSError, subprocess.TimeoutExpired):
        return None
    root = Path(out.stdout.strip())
    return root if out.returncode == 0 and root.is_dir() else None


def candidates() -> list[Language]:
    """Toolchains installed on the host (blocking: call it in a thread). Each is then
    checked inside the sandbox: a toolchain under a directory the sandbox uid cannot
    traverse (rustup under /root) is not offered."""
    found = [lang for lang in BASE_LANGUAGES
             if os.access((lang.compile or lang.run)[0], os.X_OK)]
    if os.access("/usr/bin/javac", os.X_OK) and os.access("/usr/bin/java", os.X_OK):
        found.append(JAVA)
    rust_root = _sysroot("rustc", ["--print", "sysroot"])
    if rust_root is not None and (rust_root / "bin" / "rustc").exists():
        found.append(replace(RUST, binds=(Bind(rust_root, RUST_ROOT),)))
    go_root = _sysroot("go", ["env", "GOROOT"])
    if go_root is not None:
        found.append(replace(GO, binds=(Bind(go_root, GO_ROOT),)))
    return found
