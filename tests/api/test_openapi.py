"""The OpenAPI document matches the routes, and a schema-driven fuzz finds no 500."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from schemathesis.generation import GenerationMode

from server.api import endpoints
from server.settings import Settings
from tests.api.client import Api
from tests.fakes.integrations import FakeIntegrations
from tests.support.net import free_port
from tests.support.servers import ProcessServer, server_env

# Per operation and mode (positive, negative): ~400 requests in all, bounded for CI.
FUZZ_EXAMPLES = 6


async def test_document_lists_exactly_the_routes(api: Api) -> None:
    reply = await api.call("GET", "/openapi.json")
    assert reply.status == 200
    doc = reply.body
    assert doc["openapi"].startswith("3.1")
    documented = {
        (method.upper(), path) for path, item in doc["paths"].items() for method in item
    }
    assert documented == {(e.method, e.path) for e in endpoints()}
    for path, item in doc["paths"].items():
        for method, operation in item.items():
            assert operation["responses"], (method, path)
            for name in [p[1:-1] for p in path.split("/") if p.startswith("{")]:
                assert name in {p["name"] for p in operation["parameters"]}, (path, name)
    # Every documented operation is served: anonymous calls get 401 or a body error, not 405.
    for method, path in sorted(documented):
        concrete = "/".join(
            ("1" if "version" in p else str(uuid.uuid4())) if p.startswith("{") else p
            for p in path.split("/")
        )
        served = await api.call(method, concrete, data="{}")
        assert served.status not in (404, 405) or served.error_code == "not_found", (
            method, path, served.status
        )
        # 503 billing_disabled: this server has no STRIPE_SECRET_KEY (documented, on purpose).
        assert served.status != 405 and (
            served.status < 500 or served.error_code == "billing_disabled"
        ), (method, path, served.body)
    schemathesis.openapi.from_dict(doc)  # loads and resolves every $ref


def _fuzz(doc: dict[str, Any], base_url: str, token: str, real: dict[str, Any]) -> list[str]:
    """Every operation, positive and negative data; returns the 5xx answers."""
    schema = schemathesis.openapi.from_dict(doc)
    failures: list[str] = []
    counts = {"calls": 0}
    session = requests.Session()
    headers = {"Authorization": f"Bearer {token}"}
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @hypothesis.settings(
                max_examples=FUZZ_EXAMPLES,
                deadline=None,
                database=None,
                phases=[Phase.explicit, Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @hypothesis.given(case=operation.as_strategy(generation_mode=mode),
                              use_real=st.booleans())
            def run(case: Any, use_real: bool) -> None:
                if use_real and case.path_parameters:
                    for name in case.path_parameters:
                        if name in real:
                            case.path_parameters[name] = real[name]
                response = case.call(base_url=base_url, session=session, headers=headers,
                                     timeout=20)
                counts["calls"] += 1
                # A documented 503 says a part is unavailable here (the sandbox cannot enter
                # pytest's 0700 tmp dir): an answer, not a server error.
                responses = doc["paths"][case.path][case.method.lower()]["responses"]
                if response.status_code >= 500 and not (
                    response.status_code == 503 and "503" in responses
                ):
                    failures.append(
                        f"{case.method} {case.formatted_path} -> {response.status_code}: "
                        f"{case.as_curl_command()}"
                    )

            try:
                run()
            except hypothesis.errors.Unsatisfiable:
                continue
    assert counts["calls"] > 100, counts
    print(f"fuzz: {counts['calls']} calls")
    return failures


@pytest.mark.timeout(400)
async def test_schemathesis_finds_no_server_error(settings: Settings, tmp_path: Path) -> None:
    # The fuzzer's HTTP client blocks, so the server under test runs in its own process.
    # Key checks of workspace integrations go to a local fake (that knows no key), never out.
    providers = FakeIntegrations()
    await providers.start()
    node = ProcessServer(free_port(), server_env(settings, providers.env()),
                         tmp_path / "fuzz-server.log")
    await node.start(timeout_s=180)
    try:
        async with aiohttp.ClientSession() as session:
            api = Api(session, node.url)
            user = await api.sign_up()
            doc = (await api.call("GET", "/openapi.json")).body
            ws = await api.ok("POST", "/workspaces", {"name": "Fuzz"}, token=user.token)
            project = await api.ok("POST", f"/workspaces/{ws['id']}/projects",
                                   {"name": "Fuzz"}, token=user.token)
            file = await api.ok("POST", f"/projects/{project['id']}/files",
                                {"path": "a.py", "content": "x"}, token=user.token)
            conversation = await api.ok("POST", f"/projects/{project['id']}/conversations",
                                        {}, token=user.token)
        real = {
            "workspace_id": ws["id"],
            "project_id": project["id"],
            "file_id": file["id"],
            "conversation_id": conversation["id"],
            "user_id": user.id,
            "session_id": user.session_id,
            "version_number": 1,
        }
        failures = await asyncio.to_thread(
            _fuzz, doc, node.url + "/api/v1", user.token, real
        )
        assert not failures, "\n".join(failures[:20]) + "\n" + node.output()[-5000:]
    finally:
        await node.terminate()
        await providers.stop()
