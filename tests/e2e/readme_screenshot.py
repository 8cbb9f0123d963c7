"""Make docs/screenshot.png: two people in one project, chatting, editing, in a terminal.

``.venv/bin/python -m tests.e2e.readme_screenshot`` (not a test: it writes into docs/).
Uses the same throwaway PostgreSQL, fake OpenAI-compatible server and Playwright driver
as the end-to-end tests.
"""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import tempfile
from pathlib import Path

import aiohttp

from server.settings import Settings
from tests.e2e.harness import PASSWORD, REPO, Api, run_browser, start_ide_server
from tests.fakes.openai_server import FakeOpenAI, stream
from tests.fakes.sse_server import Script
from tests.support.databases import PostgresForTests

CODE = '''def greet(name: str) -> str:
    """Say hello to a collaborator."""
    return f"Hello, {name}!"


for who in ("Alice", "Bob"):
    print(greet(who))
'''
ANSWER = ("`greet` builds the message with an f-string and the loop prints it once per "
          "person. Add a type check with `mypy`, or a test with `assert greet('x') == "
          "'Hello, x!'`.")


async def main(postgres: PostgresForTests) -> None:
    dsn = await postgres.create_database()
    root = Path(tempfile.mkdtemp(prefix="icreate-shot-"))
    root.chmod(0o711)
    fake = FakeOpenAI()
    await fake.start()
    fake.play(Script(chunks=stream([w + " " for w in ANSWER.split(" ")]), delay_s=0.02))
    settings = Settings(
        database_url=dsn, jwt_secret="screenshot-secret-0123456789-0123456789",
        data_dir=root / "data",
    )
    ai = dataclasses.replace(settings.ai, base_url=fake.url, api_key="sk-fake",
                             model="gpt-fake-1", embedded=False)
    server = await start_ide_server(dataclasses.replace(settings, ai=ai), root)
    try:
        async with aiohttp.ClientSession() as http:
            api = Api(server.url, http)
            alice = await api.sign_up("alice@example.com", "Alice")
            bob = await api.sign_up("bob@example.com", "Bob")
            stage = await api.shared_project(alice, bob)
            project_id = stage["project"]["id"]
            await api.create_file(alice, project_id, "README.md", "# demo\n")
            await api.create_file(alice, project_id, "greet.py", CODE)
            conversation = await api.call("POST", f"/projects/{project_id}/conversations",
                                          alice, {"title": "Code review"})
        users = [{"email": u.email, "password": PASSWORD, "name": u.name} for u in (alice, bob)]
        result = await run_browser("tour", {
            "url": server.url, "project_id": project_id, "conversation_id": conversation["id"],
            "file_name": "greet.py", "bob_types": "\nprint(greet('world'))",
            "question": "What does greet.py do?", "command": "python3 greet.py",
            "expect": "Hello, Bob!", "users": users,
        })
        target = REPO / "docs" / "screenshot.png"
        shutil.copyfile(result["screenshot"], target)
        print(f"wrote {target}; problems: {result['problems']}")
    finally:
        await server.stop()
        await fake.stop()
        await postgres.drop_database(dsn)
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    pg = PostgresForTests()
    try:
        asyncio.run(main(pg))
    finally:
        pg.close()
