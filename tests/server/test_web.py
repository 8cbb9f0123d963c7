"""The IDE page at ``/``: served from web/dist with a strict CSP, never shadowing the API."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from server.errors import http_error_handler
from server.web import WebPage, content_security_policy, web_route
from tests.support.net import free_port, wait_tcp
from tests.support.servers import LiveServer

DIST = Path(__file__).resolve().parents[2] / "web" / "dist"


def csp_directives(header: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for part in header.split(";"):
        name, *values = part.split()
        out[name] = values
    return out


def test_policy_allows_scripts_and_sockets_only_from_this_origin() -> None:
    policy = csp_directives(content_security_policy("127.0.0.1:8000"))
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"]  # no inline, no eval
    assert policy["connect-src"] == ["'self'", "ws://127.0.0.1:8000", "wss://127.0.0.1:8000"]
    assert policy["object-src"] == ["'none'"]
    assert policy["frame-ancestors"] == ["'none'"]
    assert policy["base-uri"] == ["'none'"]
    assert policy["frame-src"] == ["'none'"]  # no preview origin: no frame at all
    with_previews = csp_directives(content_security_policy("h:1", "http://*.localhost:8001"))
    assert with_previews["frame-src"] == ["http://*.localhost:8001"]


async def test_page_is_served_with_security_headers(
    live_server: Callable[..., Awaitable[LiveServer]],
) -> None:
    assert (DIST / "index.html").is_file(), "web/dist missing: `npm ci && npm run build` in web/"
    server = await live_server()
    async with aiohttp.ClientSession() as http:
        async with http.get(server.url + "/") as resp:
            assert resp.status == 200
            html = await resp.text()
            policy = csp_directives(resp.headers["content-security-policy"])
            assert resp.headers["x-content-type-options"] == "nosniff"
            assert resp.headers["x-frame-options"] == "DENY"
        assert "<script" in html and 'src="/app.js"' in html
        assert "<script>" not in html, "no inline script in the page"
        assert policy["script-src"] == ["'self'"]
        assert f"ws://127.0.0.1:{server.port}" in policy["connect-src"]
        # The live preview pane may show the preview origin's hosts, nothing else.
        origin = server.app.state.services.previews.origin
        assert policy["frame-src"] == [origin.replace("://", "://*.")]
        async with http.get(server.url + "/app.js") as resp:
            assert resp.status == 200
            assert "javascript" in resp.headers["content-type"]
            assert "content-security-policy" in resp.headers
        # No secret of the server ends up in the bundle.
        bundle = (DIST / "app.js").read_text()
        assert server.settings.jwt_secret not in bundle


async def test_page_never_shadows_other_routes(
    live_server: Callable[..., Awaitable[LiveServer]],
) -> None:
    server = await live_server()
    async with aiohttp.ClientSession() as http:
        async with http.get(server.url + "/healthz") as resp:
            assert resp.status == 200
            assert (await resp.json())["status"] in {"ok", "degraded"}
        async with http.get(server.url + "/no/such/page.js") as resp:
            assert resp.status == 404
            assert (await resp.json())["error"]["code"] == "not_found"
        async with http.post(server.url + "/", data=b"x") as resp:
            assert resp.status == 405
        async with http.ws_connect(server.ws_url + "/ws/no-such-socket") as ws:
            msg = await ws.receive(timeout=5)
            assert msg.type == aiohttp.WSMsgType.CLOSE
            assert msg.data == 4404


async def wait_tcp_async(port: int) -> None:
    await asyncio.to_thread(wait_tcp, "127.0.0.1", port)


async def _serve(app: Starlette) -> tuple[str, uvicorn.Server, asyncio.Task[None]]:
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve())
    url = f"http://127.0.0.1:{port}"
    await wait_tcp_async(port)
    return url, server, task


@pytest.mark.parametrize("built", [True, False])
async def test_page_mount_is_last_and_placeholder_when_unbuilt(tmp_path: Path, built: bool) -> None:
    dist = tmp_path / "dist"
    dist.mkdir()
    if built:
        (dist / "index.html").write_text("<!doctype html><p>built page</p>")

    async def api(request: Request) -> PlainTextResponse:
        return PlainTextResponse("api")

    app = Starlette(
        routes=[Route("/api/v1/ping", api), web_route(dist)],
        exception_handlers={HTTPException: http_error_handler},
    )
    assert isinstance(app.routes[-1].app, WebPage)  # type: ignore[attr-defined]
    url, server, task = await _serve(app)
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(url + "/api/v1/ping") as resp:
                assert await resp.text() == "api"
            async with http.get(url + "/") as resp:
                assert resp.status == 200
                body = await resp.text()
                assert ("built page" in body) is built
                assert ("not built yet" in body) is not built
                assert "script-src 'self'" in resp.headers["content-security-policy"]
            async with http.get(url + "/missing") as resp:
                assert resp.status == 404
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, 10)
