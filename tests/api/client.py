"""A small HTTP client for the REST API tests: real aiohttp against the live server."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from multidict import CIMultiDict

PASSWORD = "correct horse battery staple"


@dataclass
class Reply:
    status: int
    body: Any
    headers: CIMultiDict[str]

    @property
    def error_code(self) -> str | None:
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            code = self.body["error"].get("code")
            return str(code) if code is not None else None
        return None


@dataclass
class User:
    id: str
    email: str
    token: str
    refresh_token: str
    session_id: str
    extra: dict[str, Any] = field(default_factory=dict)


class Api:
    def __init__(self, session: aiohttp.ClientSession, base_url: str) -> None:
        self.session = session
        self.base = base_url.rstrip("/") + "/api/v1"

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        headers: dict[str, str] | None = None,
        data: bytes | str | None = None,
        params: dict[str, str] | None = None,
    ) -> Reply:
        sent = dict(headers or {})
        if token:
            sent["Authorization"] = f"Bearer {token}"
        kwargs: dict[str, Any] = {"headers": sent, "params": params}
        if data is not None:
            kwargs["data"] = data
            sent.setdefault("Content-Type", "application/json")
        elif body is not None:
            kwargs["json"] = body
        async with self.session.request(method, self.base + path, **kwargs) as resp:
            raw = await resp.read()
            try:
                parsed: Any = await resp.json(content_type=None) if raw else None
            except ValueError:
                parsed = raw.decode(errors="replace")
            return Reply(resp.status, parsed, CIMultiDict(resp.headers))

    async def sign_up(self, email: str | None = None, password: str = PASSWORD) -> User:
        email = email or f"u-{uuid.uuid4().hex[:10]}@example.test"
        reply = await self.call("POST", "/auth/signup", {"email": email, "password": password})
        assert reply.status == 201, reply.body
        return _user(reply.body)

    async def sign_in(self, email: str, password: str = PASSWORD) -> Reply:
        return await self.call("POST", "/auth/signin", {"email": email, "password": password})

    async def ok(self, method: str, path: str, body: Any = None, *, token: str) -> Any:
        reply = await self.call(method, path, body, token=token)
        assert 200 <= reply.status < 300, (method, path, reply.status, reply.body)
        return reply.body

    async def all_pages(self, path: str, *, token: str, limit: int = 2) -> list[Any]:
        items: list[Any] = []
        cursor: str | None = None
        while True:
            params = {"limit": str(limit)}
            if cursor:
                params["cursor"] = cursor
            reply = await self.call("GET", path, token=token, params=params)
            assert reply.status == 200, reply.body
            items.extend(reply.body["items"])
            cursor = reply.body["next_cursor"]
            if cursor is None:
                return items


def _user(body: dict[str, Any]) -> User:
    return User(
        id=body["user"]["id"],
        email=body["user"]["email"],
        token=body["access_token"],
        refresh_token=body["refresh_token"],
        session_id=body["session_id"],
    )


def as_user(body: dict[str, Any]) -> User:
    return _user(body)
