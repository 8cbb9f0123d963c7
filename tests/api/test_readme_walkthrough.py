"""The README's curl walkthrough, run as written with real curl and jq against the server."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

from tests.support.servers import LiveServer

README = Path(__file__).resolve().parents[2] / "README.md"


def walkthrough() -> str:
    text = README.read_text()
    section = text.split("## Using the API with curl", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```bash\n(.*?)```", section, re.S)
    assert match, "no bash block in the README's curl section"
    return match.group(1)


async def test_readme_curl_walkthrough(server: LiveServer) -> None:
    proc = await asyncio.create_subprocess_exec(
        "bash", "-euo", "pipefail", "-c", walkthrough(),
        env={**os.environ, "API": server.url + "/api/v1"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 90)
    lines = [line for line in out.decode().splitlines() if line]
    assert proc.returncode == 0, (out.decode(), err.decode())
    assert "grace@example.com is a viewer" in lines
    tree = ["README.md", "src", "src/components", "src/components/App.jsx", "src/index.js"]
    assert lines[-10:-5] == tree
    assert lines[-5] == 'console.log("hello")'
    assert lines[-4:] == ["403", "403", "403", "403"]
