"""Deployments as jobs: statuses and logs on the project channel, failure with logs, secrets
masked, cancel at each stage, production by admins, roll back."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp

from persistence.db import Database
from tests.preview.apps import STATIC_SITE
from tests.preview.conftest import Client, World, add_files, token


def _package(build: str) -> dict[str, str]:
    return {
        "package.json": json.dumps({"scripts": {"build": build, "start": "node server.js"}}),
        "server.js": "require('http').createServer((q, s) => s.end(require('fs')"
                     ".readFileSync('out.txt'))).listen(Number(process.env.PORT), '127.0.0.1')",
    }


async def _events(client: Client, world: World, until: str, into: list[dict[str, Any]],
                  ready: asyncio.Event) -> None:
    url = f"{client.server.ws_url}/ws/projects/{world.project}?token={token(world.member)}"
    async with client.http.ws_connect(url) as ws:
        async with asyncio.timeout(60):
            async for message in ws:
                assert message.type == aiohttp.WSMsgType.TEXT
                event = json.loads(message.data)
                if event["type"] == "hello":
                    ready.set()
                into.append(event)
                if event["type"] == "deployment.status" and event["status"] == until:
                    return


async def test_build_logs_stream_to_the_channel_and_are_kept_with_secrets_masked(
        client: Client, world: World, db: Database) -> None:
    status, _ = await client.api("POST", f"/projects/{world.project}/environment-variables",
                                 world.owner, {"key": "API_TOKEN", "value": "s3cr3t-value-42",
                                               "environment": "development"})
    assert status == 201
    await add_files(db, world.project, _package(
        "echo building with $API_TOKEN; echo made > out.txt; echo done building"))
    events: list[dict[str, Any]] = []
    ready = asyncio.Event()
    listener = asyncio.create_task(_events(client, world, "success", events, ready))
    await ready.wait()
    row = await client.deploy(world.member, world.project)
    done = await client.wait(world.member, world.project, row["id"])
    await listener
    assert done["status"] == "success", done["logs"]
    statuses = [e["status"] for e in events if e["type"] == "deployment.status"]
    assert statuses == ["pending", "building", "deploying", "success"]
    streamed = "".join(e["text"] for e in events if e["type"] == "deployment.log")
    for text in (streamed, done["logs"]):
        assert "building with *****" in text
        assert "s3cr3t-value-42" not in text
        assert "done building" in text
    cookie = await client.session_cookie(world.member, world.project)
    assert await client.get(world.project, "/", cookie=cookie) == (200, "made\n")


async def test_a_failed_build_is_failed_with_its_logs(
        client: Client, world: World, db: Database) -> None:
    await add_files(db, world.project, _package("echo compiling; echo 'syntax error' >&2; exit 3"))
    row = await client.deploy(world.member, world.project)
    done = await client.wait(world.member, world.project, row["id"])
    assert done["status"] == "failed"
    assert done["error"] == "the build failed (exit status 3)"
    assert "compiling" in done["logs"] and "syntax error" in done["logs"]
    assert done["deploy_url"] is None and done["build_time_ms"] is not None
    assert client.previews.runtime.running(_key(world)) is None


async def test_an_app_that_never_listens_fails_the_deployment(
        client: Client, world: World, db: Database) -> None:
    await add_files(db, world.project, {
        "package.json": '{"scripts": {"start": "node crash.js"}}',
        "crash.js": "console.log('starting'); throw new Error('boom at start')",
    })
    row = await client.deploy(world.member, world.project)
    done = await client.wait(world.member, world.project, row["id"])
    assert done["status"] == "failed"
    assert "exited" in done["error"] and "boom at start" in done["logs"]


async def test_nothing_to_serve_is_a_clear_failure(
        client: Client, world: World, db: Database) -> None:
    await add_files(db, world.project, {"notes.txt": "no app here"})
    row = await client.deploy(world.member, world.project)
    done = await client.wait(world.member, world.project, row["id"])
    assert done["status"] == "failed" and done["error"].startswith("nothing to serve")


async def test_cancel_stops_a_running_build(
        client: Client, world: World, db: Database) -> None:
    await add_files(db, world.project, _package("echo started; sleep 60; echo never"))
    row = await client.deploy(world.member, world.project)
    await client.wait(world.member, world.project, row["id"], ("building",))
    deadline = time.monotonic() + 20
    while "started" not in ((await client.api(
            "GET", f"/projects/{world.project}/deployments/{row['id']}", world.member))[1]
            .get("logs") or ""):
        # logs are saved when the build ends; the channel shows them live
        if time.monotonic() > deadline:
            break
        await asyncio.sleep(0.2)
    status, body = await client.api(
        "POST", f"/projects/{world.project}/deployments/{row['id']}/cancel", world.member)
    assert status == 200 and body["status"] == "canceled"
    started = time.monotonic()
    job_done = False
    while time.monotonic() - started < 10:
        async with db.service() as conn:
            job_status = await conn.fetchval(
                "select status from background_jobs where id = $1", body["job_id"])
        if job_status == "completed":
            job_done = True
            break
        await asyncio.sleep(0.1)
    assert job_done, job_status
    assert time.monotonic() - started < 5  # the sleep 60 was stopped, not waited for
    done = await client.wait(world.member, world.project, row["id"])
    assert done["status"] == "canceled" and "\nnever\n" not in (done["logs"] or "")
    assert "canceled" in done["logs"]
    # Finished: nothing to cancel any more.
    status, body = await client.api(
        "POST", f"/projects/{world.project}/deployments/{row['id']}/cancel", world.member)
    assert status == 409 and body["error"]["code"] == "not_cancelable"


async def test_cancel_while_pending_and_one_unfinished_per_environment(
        client: Client, world: World, db: Database) -> None:
    await add_files(db, world.project, _package("sleep 30"))
    first = await client.deploy(world.member, world.project)
    again = await client.deploy(world.member, world.project)
    assert again["id"] == first["id"] and again["created"] is False
    status, _body = await client.api(
        "POST", f"/projects/{world.project}/deployments/{first['id']}/cancel", world.member)
    assert status == 200
    done = await client.wait(world.member, world.project, first["id"])
    assert done["status"] == "canceled"
    # A viewer cannot deploy or cancel; a member cannot deploy to production.
    status, _ = await client.api("POST", f"/projects/{world.project}/deployments",
                                 world.viewer, {})
    assert status == 403
    status, _ = await client.api("POST", f"/projects/{world.project}/deployments",
                                 world.member, {"environment": "production"})
    assert status == 403
    status, _ = await client.api("POST", f"/projects/{world.project}/deployments",
                                 world.member, {"environment": "moon"})
    assert status == 422


async def test_roll_back_production_to_the_previous_deployment(
        client: Client, world: World, db: Database) -> None:
    ids = await add_files(db, world.project, STATIC_SITE)
    first = await client.deploy(world.owner, world.project, "production")
    assert (await client.wait(world.owner, world.project, first["id"]))["status"] == "success"
    documents = client.server.app.state.services.documents
    await documents.write_text(ids["index.html"], "<h1>v2</h1>", world.owner)
    second = await client.deploy(world.owner, world.project, "production")
    assert (await client.wait(world.owner, world.project, second["id"]))["status"] == "success"
    status, _ = await client.api("PUT", f"/projects/{world.project}/preview-access",
                                 world.owner, {"public": True})
    assert status == 200
    assert await client.get(world.project, "/", environment="production") == (200, "<h1>v2</h1>")

    status, body = await client.api("POST", f"/projects/{world.project}/deployments/rollback",
                                    world.member, {"environment": "production"})
    assert status == 403
    status, body = await client.api("POST", f"/projects/{world.project}/deployments/rollback",
                                    world.owner, {"environment": "production"})
    assert status == 200, body
    assert body["deployment_id"] == first["id"] and body["action"] == "rollback"
    assert body["previous_deployment_id"] == second["id"]
    assert await client.get(world.project, "/", environment="production") == (
        200, STATIC_SITE["index.html"])
    # Promote the newer one again: the previous is kept, so it can go either way.
    status, body = await client.api(
        "POST", f"/projects/{world.project}/deployments/{second['id']}/promote", world.owner)
    assert status == 200 and body["previous_deployment_id"] == first["id"]
    assert await client.get(world.project, "/", environment="production") == (200, "<h1>v2</h1>")
    # A failed or unknown deployment cannot be promoted.
    status, body = await client.api(
        "POST", f"/projects/{world.project}/deployments/{world.project}/promote", world.owner)
    assert status == 404


def _key(world: World):  # type: ignore[no-untyped-def]
    from preview.runtime import PreviewKey

    return PreviewKey(world.project, "development")


async def test_cancel_while_deploying_stops_the_starting_app(
        client: Client, world: World, db: Database) -> None:
    # An app that never listens: the deployment waits in `deploying` for it to answer.
    await add_files(db, world.project, {"package.json": '{"scripts": {"start": "sleep 59.4321"}}'})
    row = await client.deploy(world.member, world.project)
    await client.wait(world.member, world.project, row["id"], ("deploying",))
    started = time.monotonic()
    status, _ = await client.api(
        "POST", f"/projects/{world.project}/deployments/{row['id']}/cancel", world.member)
    assert status == 200
    done = await client.wait(world.member, world.project, row["id"])
    assert done["status"] == "canceled"
    while client.previews.runtime.running(_key(world)) is not None or any(
            "sleep 59.4321" in line for line in _processes()):
        assert time.monotonic() - started < 5, "the starting app was not stopped"
        await asyncio.sleep(0.1)


async def test_commit_and_branch_come_from_the_connected_repository(
        client: Client, world: World, db: Database) -> None:
    await add_files(db, world.project, STATIC_SITE)
    async with db.service() as conn:
        await conn.execute(
            "insert into git_repositories (project_id, provider, repo_url, default_branch,"
            " base_commit) values ($1, 'github', 'https://github.com/a/b', 'trunk', $2)",
            world.project, "c0ffee" * 6 + "abcd")
    row = await client.deploy(world.member, world.project)
    assert (row["commit_sha"], row["branch"]) == ("c0ffee" * 6 + "abcd", "trunk")
    done = await client.wait(world.member, world.project, row["id"])
    assert done["status"] == "success" and done["branch"] == "trunk"


def _processes() -> list[str]:
    import os

    lines = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    lines.append(f.read().replace(b"\0", b" ").decode(errors="replace"))
            except OSError:
                continue
    return lines
