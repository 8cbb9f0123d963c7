"""First contact: sign up, /me, a workspace, the OpenAPI document."""

from __future__ import annotations

from tests.api.client import Api


async def test_sign_up_then_me_and_workspace(api: Api) -> None:
    user = await api.sign_up()
    me = await api.ok("GET", "/me", token=user.token)
    assert me["email"] == user.email
    ws = await api.ok("POST", "/workspaces", {"name": "My Team"}, token=user.token)
    assert ws["slug"] == "my-team" and ws["role"] == "owner"
    listed = await api.ok("GET", "/workspaces", token=user.token)
    assert [w["id"] for w in listed["items"]] == [ws["id"]]
