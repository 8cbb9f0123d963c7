"""How a project is built and served, read from its files (no code of it runs here).

Order: ``icreate.toml`` (``[preview]`` table: ``kind``, ``build``, ``run``, ``directory``)
overrides; else ``package.json`` (``scripts.build`` is the build, ``scripts.start`` or
``main`` the server); else ``requirements.txt`` / ``pyproject.toml`` naming Flask,
Starlette or FastAPI; else a static ``index.html`` (at the root, ``public/``, ``dist/``
or ``build/``). The app must listen on ``$PORT`` (``127.0.0.1`` inside its own network
namespace: nobody else can reach it anyway).
"""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Kind = Literal["static", "node", "python"]
KINDS: tuple[Kind, ...] = ("static", "node", "python")
APP_PORT = 8080
STATIC_DIRS = ("", "public", "dist", "build")
PYTHON_ENTRIES = ("app.py", "main.py", "server.py", "wsgi.py", "asgi.py")
NODE_ENTRIES = ("server.js", "index.js", "app.js", "main.js")
REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
ASGI_FRAMEWORKS = frozenset({"starlette", "fastapi"})


class SpecError(ValueError):
    """The project does not say (or says wrongly) how to serve it: a clear build error."""


@dataclass(frozen=True)
class AppSpec:
    kind: Kind
    run: str  # a shell command line, run by /bin/sh in the sandbox
    build: str | None = None
    requirements: tuple[str, ...] = field(default=())  # Python distributions to install
    source: str = "detected"

    def describe(self) -> str:
        build = f", build: {self.build}" if self.build else ""
        return f"{self.kind} app ({self.source}), run: {self.run}{build}"


def detect(root: Path) -> AppSpec:
    manifest = root / "icreate.toml"
    if manifest.is_file():
        return _from_manifest(manifest, root)
    package = root / "package.json"
    if package.is_file():
        return _from_package(package, root)
    requirements = _python_requirements(root)
    if requirements is not None:
        return _python(root, requirements)
    for directory in STATIC_DIRS:
        if (root / directory / "index.html").is_file():
            return _static(directory, "detected")
    raise SpecError(
        "nothing to serve: add an index.html, a package.json with a start script, a "
        "requirements.txt naming flask, starlette or fastapi, or an icreate.toml"
    )


def _static(directory: str, source: str) -> AppSpec:
    target = shlex.quote(directory or ".")
    return AppSpec("static", f"exec python3 -m http.server \"$PORT\" --bind 127.0.0.1 "
                             f"--directory {target}", source=source)


def _from_manifest(path: Path, root: Path) -> AppSpec:
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SpecError(f"icreate.toml: {exc}") from None
    table = data.get("preview")
    if not isinstance(table, dict):
        raise SpecError("icreate.toml: a [preview] table is required")
    kind = table.get("kind")
    if kind not in KINDS:
        raise SpecError(f"icreate.toml: kind must be one of {', '.join(KINDS)}")
    build, run = table.get("build"), table.get("run")
    for name, value in (("build", build), ("run", run)):
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise SpecError(f"icreate.toml: {name} must be a non-empty string")
    if kind == "static":
        directory = table.get("directory", "")
        if not isinstance(directory, str) or ".." in Path(directory).parts or directory.startswith(
            "/"
        ):
            raise SpecError("icreate.toml: directory must be a relative path inside the project")
        spec = _static(directory, "icreate.toml")
        return AppSpec("static", run or spec.run, build, source="icreate.toml")
    requirements = tuple(_python_requirements(root) or ()) if kind == "python" else ()
    if run is None:
        detected = _python(root, list(requirements)) if kind == "python" else _from_package(
            root / "package.json", root)
        run = detected.run
        build = build or detected.build
    return AppSpec(kind, run, build, requirements, source="icreate.toml")


def _from_package(path: Path, root: Path) -> AppSpec:
    try:
        package = json.loads(path.read_text()) if path.is_file() else {}
    except (ValueError, UnicodeDecodeError) as exc:
        raise SpecError(f"package.json: {exc}") from None
    if not isinstance(package, dict):
        raise SpecError("package.json: not an object")
    scripts = package.get("scripts") or {}
    if not isinstance(scripts, dict):
        raise SpecError("package.json: scripts must be an object")
    build = scripts.get("build") if isinstance(scripts.get("build"), str) else None
    start = scripts.get("start")
    if isinstance(start, str) and start.strip():
        run = f"exec {start}" if not any(c in start for c in "&|;") else start
        return AppSpec("node", run, build)
    main = package.get("main")
    entries = [main] if isinstance(main, str) else list(NODE_ENTRIES)
    for entry in entries:
        if (root / entry).is_file() and ".." not in Path(entry).parts:
            return AppSpec("node", f"exec node {shlex.quote(entry)}", build)
    if build is not None:
        for directory in ("dist", "build", "public", ""):
            if directory:
                # Served after the build has made it.
                return AppSpec("static", _static(directory, "detected").run, build)
    raise SpecError("package.json: add a start script (it must listen on $PORT) or a main file")


def _python_requirements(root: Path) -> list[str] | None:
    names: list[str] = []
    requirements = root / "requirements.txt"
    if requirements.is_file():
        for line in requirements.read_text(errors="replace").splitlines():
            line = line.split("#", 1)[0].strip()
            if line and not line.startswith("-"):
                names.append(line)
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        try:
            project = tomllib.loads(pyproject.read_text()).get("project") or {}
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise SpecError(f"pyproject.toml: {exc}") from None
        names += [d for d in project.get("dependencies") or [] if isinstance(d, str)]
    if not names and not requirements.is_file():
        return None
    frameworks = {_name(n) for n in names}
    if not frameworks & (ASGI_FRAMEWORKS | {"flask"}):
        return None if not requirements.is_file() else names
    return names


def _name(requirement: str) -> str:
    match = REQUIREMENT_NAME.match(requirement)
    return match.group(1).lower().replace("_", "-") if match else ""


def _python(root: Path, requirements: list[str]) -> AppSpec:
    names = {_name(r) for r in requirements}
    entry = next((e for e in PYTHON_ENTRIES if (root / e).is_file()), None)
    if entry is None:
        raise SpecError(f"a Python web app needs one of {', '.join(PYTHON_ENTRIES)}")
    module = entry.removesuffix(".py")
    if names & ASGI_FRAMEWORKS:
        extra = () if "uvicorn" in names else ("uvicorn",)
        run = (f"exec python3 -m uvicorn {module}:app --host 127.0.0.1 --port \"$PORT\" "
               "--no-access-log")
        return AppSpec("python", run, requirements=(*requirements, *extra))
    if "flask" in names:
        run = f"exec python3 -m flask --app {module} run --host 127.0.0.1 --port \"$PORT\""
        return AppSpec("python", run, requirements=tuple(requirements))
    raise SpecError("requirements.txt: name flask, starlette or fastapi (or add icreate.toml "
                    "with a run command)")
