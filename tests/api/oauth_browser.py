"""A browser for the OAuth tests: its own cookie jar, following the redirects by hand."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import aiohttp

from tests.api.client import Api, Reply, User, as_user


@dataclass
class Landing:
    """Where our callback sent the browser: the page path and its fragment parameters."""

    path: str
    fragment: dict[str, str]

    @property
    def error(self) -> str | None:
        return self.fragment.get("oauth_error")


class Browser:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.api = Api(self.session, base_url)

    async def close(self) -> None:
        await self.session.close()

    async def start(
        self, provider: str, purpose: str = "sign_in", token: str | None = None,
        return_to: str | None = None,
    ) -> Reply:
        body: dict[str, Any] = {"purpose": purpose}
        if return_to is not None:
            body["return_to"] = return_to
        return await self.api.call("POST", f"/auth/oauth/{provider}/start", body, token=token)

    async def authorize(self, authorization_url: str) -> str:
        """The provider's answer: the callback URL it redirects the browser to."""
        async with self.session.get(authorization_url, allow_redirects=False) as resp:
            assert resp.status == 302, (resp.status, await resp.text())
            return resp.headers["Location"]

    async def land(self, callback_url: str) -> Landing:
        """Follow the provider's redirect to our callback; where it sends us next."""
        async with self.session.get(callback_url, allow_redirects=False) as resp:
            assert resp.status == 303, (resp.status, await resp.text())
            location = urlsplit(resp.headers["Location"])
        return Landing(location.path, dict(parse_qsl(location.fragment)))

    async def exchange(self, grant: str) -> Reply:
        return await self.api.call("POST", "/auth/oauth/exchange", {"code": grant})

    async def round_trip(
        self, provider: str, purpose: str = "sign_in", token: str | None = None
    ) -> Landing:
        started = await self.start(provider, purpose, token)
        assert started.status == 200, started.body
        callback = await self.authorize(started.body["authorization_url"])
        return await self.land(callback)

    async def sign_in(self, provider: str) -> User:
        landing = await self.round_trip(provider)
        assert landing.error is None, landing.fragment
        reply = await self.exchange(landing.fragment["oauth"])
        assert reply.status == 200, reply.body
        return as_user(reply.body)
