"""The OAuth service of one process: the offered providers and Authlib clients for them.

Authlib's client is ``AsyncOAuth2Client`` on httpx2: Authlib has no aiohttp client (its
async integration is httpx2, with a deprecated fallback to httpx), and it does the parts
worth not writing by hand: PKCE
(S256 challenge from our verifier), the token request with the provider's client
authentication (basic or post), the refresh grant, ``expires_in`` -> ``expires_at``. A client
holds per-flow state (the token it fetched), so one is made per operation, sharing one TLS
context; plain API calls (identity, discovery, revocation) share one ``httpx2.AsyncClient``.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

import httpx2
from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError

from persistence.crypto import Keyring
from persistence.db import Database
from persistence.oauth import TokenSet
from server.oauth.config import OAuthConfig
from server.oauth.errors import OAuthError as OurOAuthError
from server.oauth.errors import ProviderError
from server.oauth.providers import PROVIDERS, Provider


class OAuthService:
    def __init__(self, config: OAuthConfig, db: Database, keyring: Keyring) -> None:
        self.config = config
        self.db = db
        self.keyring = keyring
        self.providers: dict[str, Provider] = {
            name: factory(config.settings_for(name))
            for name, factory in PROVIDERS.items()
            if config.settings_for(name).offered
        }
        self._tls_context: ssl.SSLContext | None = None
        self._http: httpx2.AsyncClient | None = None

    @property
    def _tls(self) -> ssl.SSLContext:
        # Made on first use: loading the CA store takes tens of milliseconds of the event
        # loop, and the recurring refresh job builds a service every 5 minutes that usually
        # finds nothing due and makes no request.
        if self._tls_context is None:
            self._tls_context = ssl.create_default_context()
        return self._tls_context

    @property
    def http(self) -> httpx2.AsyncClient:
        if self._http is None:
            self._http = httpx2.AsyncClient(
                timeout=self.config.http_timeout_s, verify=self._tls, follow_redirects=False
            )
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def provider(self, name: str) -> Provider:
        found = self.providers.get(name)
        if found is None:
            raise OurOAuthError(
                "provider_not_offered", f"sign-in with {name!r} is not offered", 404
            )
        return found

    @asynccontextmanager
    async def client(
        self, provider: Provider, redirect_uri: str | None = None
    ) -> AsyncIterator[AsyncOAuth2Client]:
        settings = provider.settings
        client = AsyncOAuth2Client(
            client_id=settings.client_id,
            client_secret=settings.client_secret,
            token_endpoint_auth_method=provider.token_auth_method,
            code_challenge_method="S256",
            redirect_uri=redirect_uri,
            timeout=self.config.http_timeout_s,
            verify=self._tls,
        )
        client.register_compliance_hook("access_token_response", token_response)
        client.register_compliance_hook("refresh_token_response", token_response)
        try:
            yield client
        finally:
            await client.aclose()

    async def exchange_code(
        self, provider: Provider, code: str, code_verifier: str, redirect_uri: str
    ) -> dict[str, Any]:
        endpoints = await provider.endpoints(self.http)
        async with self.client(provider, redirect_uri) as client:
            try:
                token = await client.fetch_token(
                    endpoints.token, grant_type="authorization_code", code=code,
                    code_verifier=code_verifier, redirect_uri=redirect_uri,
                )
            except OAuthError as exc:  # GitHub: HTTP 200 with {"error": ...}
                raise ProviderError(exc.error or "oauth_error", exc.description or "") from exc
            except httpx2.HTTPError as exc:
                raise _unreachable(exc) from exc
        return dict(token)

    async def refresh(self, provider: Provider, refresh_token: str) -> dict[str, Any]:
        endpoints = await provider.endpoints(self.http)
        async with self.client(provider) as client:
            try:
                token = await client.refresh_token(endpoints.token, refresh_token=refresh_token)
            except OAuthError as exc:
                raise ProviderError(exc.error or "oauth_error", exc.description or "") from exc
            except httpx2.HTTPError as exc:
                raise _unreachable(exc) from exc
        return dict(token)


def _unreachable(exc: Exception) -> OurOAuthError:
    return OurOAuthError("provider_unreachable", f"provider unreachable: {type(exc).__name__}", 502)


def _body(resp: httpx2.Response) -> tuple[dict[str, Any], bool]:
    """(parsed body, whether it was form-encoded) of a token endpoint answer."""
    kind = resp.headers.get("content-type", "")
    text = resp.text
    if "json" in kind or text.lstrip().startswith("{"):
        try:
            data = resp.json()
        except ValueError:
            data = None
        if isinstance(data, dict):
            return data, False
    return dict(parse_qsl(text, keep_blank_values=True)), True


def token_response(resp: httpx2.Response) -> httpx2.Response:
    """Authlib compliance hook: errors in any shape -> ``ProviderError``; form -> JSON.

    Authlib raises on an HTTP error status before reading the body, which would lose the
    provider's ``error`` (``invalid_grant`` for an expired or reused code); GitHub answers
    form-encoded unless asked for JSON.
    """
    data, was_form = _body(resp)
    if resp.status_code >= 400 or "error" in data:
        code = str(data.get("error") or f"http_{resp.status_code}")
        description = str(data.get("error_description") or data.get("error") or resp.reason_phrase)
        raise ProviderError(code, description, 400 if resp.status_code < 500 else 502)
    if "access_token" not in data:
        raise ProviderError("bad_response", "the token endpoint answered no access_token")
    if was_form or "scope" not in data:
        # Bitbucket names the granted scopes "scopes".
        if "scope" not in data and "scopes" in data:
            data = {**data, "scope": data["scopes"]}
        return httpx2.Response(200, json=data, request=resp.request)
    return resp


def token_set(token: dict[str, Any], previous_refresh: str | None = None) -> TokenSet:
    """Our view of an Authlib token: absolute expiry, scopes as a list."""
    expires_at = token.get("expires_at")
    scope = token.get("scope")
    scopes = (
        [s for s in str(scope).replace(",", " ").split() if s] if scope is not None else None
    )
    return TokenSet(
        access_token=str(token["access_token"]),
        refresh_token=str(token["refresh_token"]) if token.get("refresh_token")
        else previous_refresh,
        expires_at=datetime.fromtimestamp(int(expires_at), UTC) if expires_at else None,
        scopes=scopes,
    )
