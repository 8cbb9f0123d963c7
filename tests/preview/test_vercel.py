"""The Vercel target against a local server speaking Vercel's API: upload by SHA, create,
poll, alias; rate limits waited out, build errors and timeouts reported; roll back."""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest

from persistence.db import Database
from persistence.integrations import save_workspace_key
from server.settings import Settings
from tests.fakes.vercel_server import FakeVercel
from tests.preview.apps import STATIC_SITE
from tests.preview.conftest import Client, StartServer, World, add_files

TOKEN = "vercel-token-0123456789"


@pytest.fixture
async def vercel() -> AsyncIterator[FakeVercel]:
    fake = FakeVercel(tokens={TOKEN})
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def vclient(live_server: StartServer, preview_settings: Settings, vercel: FakeVercel,
                  world: World, db: Database) -> AsyncIterator[Client]:
    settings = dataclasses.replace(
        preview_settings,
        integrations=dataclasses.replace(preview_settings.integrations, vercel_url=vercel.url),
        preview=dataclasses.replace(preview_settings.preview, vercel_poll_s=0.05,
                                    vercel_timeout_s=2.0))
    server = await live_server(settings)
    async with db.service() as conn:
        workspace = await conn.fetchval("select workspace_id from projects where id = $1",
                                        world.project)
        await save_workspace_key(conn, server.app.state.services.keyring,
                                 workspace_id=workspace, user_id=world.owner, provider="vercel",
                                 api_key=TOKEN, config={"team_id": "team_42"})
    await add_files(db, world.project, STATIC_SITE)
    async with aiohttp.ClientSession() as http:
        yield Client(server, http)


async def _slug(db: Database, project: uuid.UUID) -> str:
    async with db.service() as conn:
        return str(await conn.fetchval("select slug from projects where id = $1", project))


async def test_production_deploy_uploads_by_sha_polls_and_aliases(
        vclient: Client, vercel: FakeVercel, world: World, db: Database) -> None:
    row = await vclient.deploy(world.owner, world.project, "production", target="vercel")
    done = await vclient.wait(world.owner, world.project, row["id"])
    assert done["status"] == "success", done["logs"]
    slug = await _slug(db, world.project)
    assert done["deploy_url"] == f"https://{slug}.vercel.app"
    assert done["external_id"] in vercel.deployments
    assert vercel.aliases == {f"{slug}.vercel.app": done["external_id"]}
    for content in STATIC_SITE.values():
        assert vercel.files[hashlib.sha1(content.encode()).hexdigest()] == content.encode()
    deployed = vercel.deployments[done["external_id"]]
    assert set(deployed["files"]) == set(STATIC_SITE) and deployed["target"] == "production"
    assert all(query.get("teamId") == "team_42" for _m, _p, query in vercel.requests)
    assert "uploading 2 new files" in done["logs"] and "Build Completed" in done["logs"]
    # The same files again: nothing to upload (Vercel has them by SHA).
    again = await vclient.deploy(world.owner, world.project, "production", target="vercel")
    done = await vclient.wait(world.owner, world.project, again["id"])
    assert done["status"] == "success" and "uploading" not in done["logs"]


async def test_rate_limits_are_waited_out(
        vclient: Client, vercel: FakeVercel, world: World) -> None:
    vercel.rate_limited = 3
    row = await vclient.deploy(world.member, world.project, "staging", target="vercel")
    done = await vclient.wait(world.member, world.project, row["id"])
    assert done["status"] == "success", done["logs"]
    assert vercel.throttled == 3
    assert done["deploy_url"].startswith("https://") and done["deploy_url"].endswith(
        ".vercel.app")


async def test_a_vercel_build_error_fails_with_its_output(
        vclient: Client, vercel: FakeVercel, world: World) -> None:
    vercel.build_error = True
    row = await vclient.deploy(world.member, world.project, "staging", target="vercel")
    done = await vclient.wait(world.member, world.project, row["id"])
    assert done["status"] == "failed"
    assert done["error"] == 'Vercel build error: Command "npm run build" exited with 1'
    assert "Cannot find module 'left-pad'" in done["logs"]


async def test_a_vercel_deployment_that_never_finishes_times_out_and_is_canceled(
        vclient: Client, vercel: FakeVercel, world: World) -> None:
    vercel.hang = True
    row = await vclient.deploy(world.member, world.project, "staging", target="vercel")
    done = await vclient.wait(world.member, world.project, row["id"])
    assert done["status"] == "failed" and "did not finish within 2 s" in done["error"]
    [remote] = vercel.deployments.values()
    assert remote["readyState"] == "CANCELED"


async def test_a_bad_token_or_none_is_a_clear_failure(
        vclient: Client, vercel: FakeVercel, world: World, db: Database) -> None:
    vercel.tokens.clear()
    row = await vclient.deploy(world.member, world.project, "staging", target="vercel")
    done = await vclient.wait(world.member, world.project, row["id"])
    assert done["status"] == "failed" and "forbidden" in done["error"]
    async with db.service() as conn:
        await conn.execute("delete from api_integrations where provider = 'vercel'")
    row = await vclient.deploy(world.member, world.project, "staging", target="vercel")
    done = await vclient.wait(world.member, world.project, row["id"])
    assert done["status"] == "failed" and "no Vercel token" in done["error"]


async def test_roll_back_points_the_production_alias_at_the_previous_deployment(
        vclient: Client, vercel: FakeVercel, world: World, db: Database) -> None:
    first = await vclient.deploy(world.owner, world.project, "production", target="vercel")
    first = await vclient.wait(world.owner, world.project, first["id"])
    second = await vclient.deploy(world.owner, world.project, "production", target="vercel")
    second = await vclient.wait(world.owner, world.project, second["id"])
    alias = f"{await _slug(db, world.project)}.vercel.app"
    assert vercel.aliases[alias] == second["external_id"]
    status, body = await vclient.api("POST", f"/projects/{world.project}/deployments/rollback",
                                     world.owner, {"environment": "production"})
    assert status == 200, body
    assert body["deployment_id"] == first["id"]
    assert vercel.aliases[alias] == first["external_id"]
