"""No credential reaches the logs: a real server process, a whole session, every line read.

Sockets authenticate with ``?token=``; uvicorn logs every socket handshake and request
with its query string. The session below signs up, signs in (once with a wrong
password), refreshes, calls the API (once with a token in the query string), and opens
document, project and conversation sockets, one with a forged token; then the server's
whole output (access log, error log, our own lines) is searched for every secret used.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import aiohttp

from server.settings import Settings
from tests.support.net import free_port
from tests.support.servers import ProcessServer, server_env

PASSWORD = "correct horse battery staple 42"
WRONG_PASSWORD = "not my password at all 17"
FORGED = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJmb3JnZWQifQ.c2lnbmF0dXJlLWZvcmdlZA"


async def _socket(
    session: aiohttp.ClientSession, url: str, first: dict[str, str] | None = None
) -> None:
    """Open a socket, send ``first``, read the first frame (or the close), close it."""
    async with session.ws_connect(url) as ws:
        if first is not None:
            await ws.send_json(first)
        await ws.receive(10)


async def test_session_leaves_no_token_or_password_in_the_logs(
    settings: Settings, tmp_path: Path
) -> None:
    env = server_env(settings, {"LOG_LEVEL": "info"})
    server = ProcessServer(free_port(), env, tmp_path / "server.log")
    await server.start()
    secrets: list[str] = [PASSWORD, WRONG_PASSWORD, FORGED]
    try:
        api = server.url + "/api/v1"
        email = f"ada-{uuid.uuid4().hex[:8]}@example.test"
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{api}/auth/signup",
                                 json={"email": email, "password": PASSWORD}) as resp:
                assert resp.status == 201
                signed_up = await resp.json()
            async with http.post(f"{api}/auth/signin",
                                 json={"email": email, "password": WRONG_PASSWORD}) as resp:
                assert resp.status == 401
            async with http.post(f"{api}/auth/signin",
                                 json={"email": email, "password": PASSWORD}) as resp:
                assert resp.status == 200
            async with http.post(f"{api}/auth/refresh",
                                 json={"refresh_token": signed_up["refresh_token"]}) as resp:
                assert resp.status == 200
                tokens = await resp.json()
            access = tokens["access_token"]
            secrets += [signed_up["access_token"], signed_up["refresh_token"], access,
                        tokens["refresh_token"]]
            auth = {"Authorization": f"Bearer {access}"}
            async with http.post(f"{api}/workspaces", json={"name": "Acme"},
                                 headers=auth) as resp:
                workspace = (await resp.json())["id"]
            async with http.post(f"{api}/workspaces/{workspace}/projects",
                                 json={"name": "Site"}, headers=auth) as resp:
                project = (await resp.json())["id"]
            async with http.post(f"{api}/projects/{project}/files",
                                 json={"path": "main.py", "content": "print(1)\n"},
                                 headers=auth) as resp:
                file_id = (await resp.json())["id"]
            async with http.post(f"{api}/projects/{project}/conversations",
                                 json={"title": "help"}, headers=auth) as resp:
                conversation = (await resp.json())["id"]
            # A client that puts its token in the query string of a REST call.
            async with http.get(f"{api}/projects/{project}/files",
                                params={"limit": "5", "access_token": access}) as resp:
                assert resp.status == 401
            async with http.get(f"{api}/me", headers=auth) as resp:
                assert resp.status == 200

            ws = server.ws_url
            await _socket(http, f"{ws}/ws/docs/{file_id}?token={access}")
            await _socket(http, f"{ws}/ws/projects/{project}?token={access}")
            await _socket(http, f"{ws}/ws/conversations/{conversation}?token={access}",
                          {"type": "user_message", "content": f"my password is {PASSWORD}"})
            await _socket(http, f"{ws}/ws/projects/{project}?token={FORGED}")
    finally:
        await server.terminate()
    output = server.output()
    # The URLs were logged (the test would prove nothing otherwise), without their tokens.
    assert f'"WebSocket /ws/docs/{file_id}?token=REDACTED"' in output
    assert f"/ws/projects/{project}?token=REDACTED" in output
    assert "access_token=REDACTED" in output
    leaked = [secret[:12] + "..." for secret in secrets if secret in output]
    assert leaked == [], f"credentials in the server's logs: {leaked}"
    assert "eyJ" not in output
