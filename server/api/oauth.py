"""Sign in with (and connect) GitHub, GitLab, Bitbucket, Google; list and end connections.

The page asks ``POST /auth/oauth/{provider}/start`` for the provider's URL (a cookie binds
the flow to this browser) and navigates there; the provider sends the browser back to
``/auth/oauth/{provider}/callback``, which redirects to the page with ``#oauth=<grant>``
(sign-in), ``#oauth_connected=<provider>`` or ``#oauth_error=<code>``; the page exchanges
the grant for tokens (``POST /auth/oauth/exchange``). See ``server.oauth.flows``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlencode

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from persistence import accounts
from server.api.auth import Tokens, start_session, token_answer
from server.api.routing import Ctx, Endpoint
from server.errors import ApiError
from server.oauth import flows, tokens
from server.oauth.errors import OAuthError, ProviderError
from server.oauth.service import OAuthService

COOKIE_PATH = "/api/v1/auth/oauth"


class ProviderInfo(BaseModel):
    name: str
    display_name: str


class ProviderList(BaseModel):
    providers: list[ProviderInfo]


class StartRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    purpose: Literal["sign_in", "connect"] = "sign_in"
    # Where the page wants to be afterwards: a path on this site only (no open redirect).
    return_to: str | None = Field(None, max_length=512, pattern=r"^/([^/\\#\s][^#\s]*)?$")


class StartAnswer(BaseModel):
    authorization_url: str


class ExchangeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    code: str = Field(min_length=1, max_length=256)


class Connection(BaseModel):
    provider: str
    provider_user_id: str
    username: str | None
    email: str | None
    scopes: list[str]
    token_expires_at: datetime | None
    status: str
    connected_at: datetime | None
    updated_at: datetime | None


class ConnectionList(BaseModel):
    connections: list[Connection]
    providers: list[ProviderInfo]


class Disconnected(BaseModel):
    provider: str
    # True revoked at the provider, False it refused or was unreachable (forgotten here all
    # the same), null the provider has no revocation (Bitbucket).
    revoked: bool | None


def _service(ctx: Ctx) -> OAuthService:
    return ctx.services.oauth


def _api_error(exc: OAuthError) -> ApiError:
    return ApiError(exc.status, exc.code, exc.message)


def _origin(request: Request, svc: OAuthService) -> str:
    if svc.config.public_url:
        return svc.config.public_url
    return f"{request.url.scheme}://{request.url.netloc}"


def _offered(svc: OAuthService) -> list[dict[str, str]]:
    return [{"name": p.name, "display_name": p.display_name} for p in svc.providers.values()]


async def list_providers(ctx: Ctx) -> dict[str, Any]:
    return {"providers": _offered(_service(ctx))}


async def start_oauth(ctx: Ctx) -> Response:
    body: StartRequest = ctx.body
    svc = _service(ctx)
    name = ctx.name("provider")
    user_id = ctx.user_uuid if ctx.principal is not None else None
    if body.purpose == "sign_in":
        user_id = None
    redirect_uri = f"{_origin(ctx.request, svc)}{COOKIE_PATH}/{name}/callback"
    try:
        started = await flows.start(
            svc, provider_name=name, purpose=body.purpose, user_id=user_id,
            redirect_uri=redirect_uri,
            browser_secret=ctx.request.cookies.get(flows.BROWSER_COOKIE),
            return_to=body.return_to,
        )
    except OAuthError as exc:
        raise _api_error(exc) from exc
    response = JSONResponse({"authorization_url": started.authorization_url})
    response.set_cookie(
        flows.BROWSER_COOKIE, started.browser_secret,
        max_age=svc.config.flow_ttl_s + svc.config.grant_ttl_s, path=COOKIE_PATH,
        httponly=True, samesite="lax", secure=redirect_uri.startswith("https://"),
    )
    return response


def _back_to_page(return_to: str | None, **fragment: str) -> RedirectResponse:
    # 303: the page is fetched with GET; the fragment never reaches a server or a Referer.
    return RedirectResponse(f"{return_to or '/'}#{urlencode(fragment)}", status_code=303)


async def oauth_callback(ctx: Ctx) -> Response:
    svc = _service(ctx)
    name = ctx.name("provider")
    try:
        finished = await flows.finish(
            svc, provider_name=name, params=dict(ctx.request.query_params),
            browser_secret=ctx.request.cookies.get(flows.BROWSER_COOKIE),
        )
    except OAuthError as exc:
        extra = {"detail": exc.provider_code} if isinstance(exc, ProviderError) else {}
        return _back_to_page(None, oauth_error=exc.code, provider=name, message=exc.message,
                             **extra)
    if finished.grant is not None:
        return _back_to_page(finished.return_to, oauth=finished.grant, provider=name)
    return _back_to_page(finished.return_to, oauth_connected=name)


async def exchange_grant(ctx: Ctx) -> dict[str, Any]:
    body: ExchangeRequest = ctx.body
    try:
        user_id = await flows.redeem(
            _service(ctx), body.code, ctx.request.cookies.get(flows.BROWSER_COOKIE)
        )
    except OAuthError as exc:
        raise _api_error(exc) from exc
    async with ctx.db.service() as conn:
        account = await accounts.account(conn, user_id)
        if account is None or not account["active"]:
            raise ApiError(403, "account_disabled", "this account is disabled")
        await accounts.mark_signed_in(conn, user_id)
        session_id, refresh = await start_session(ctx, conn, user_id)
    return token_answer(
        ctx, user_id, account["email"], session_id, refresh, account["raw_user_meta_data"]
    )


async def list_connections(ctx: Ctx) -> dict[str, Any]:
    svc = _service(ctx)
    return {
        "connections": await tokens.list_connections(svc, ctx.user_uuid),
        "providers": _offered(svc),
    }


async def disconnect(ctx: Ctx) -> dict[str, Any]:
    name = ctx.name("provider")
    try:
        revoked = await tokens.disconnect(_service(ctx), ctx.user_uuid, name)
    except OAuthError as exc:
        raise _api_error(exc) from exc
    return {"provider": name, "revoked": revoked}


ENDPOINTS = [
    Endpoint("GET", "/auth/providers", list_providers,
             "Sign-in providers offered here (those with a client id configured)", "auth",
             response=ProviderList, auth=False),
    Endpoint("POST", "/auth/oauth/{provider}/start", start_oauth,
             "Start signing in with (or, signed in, connecting) a provider: its URL, and a "
             "cookie binding the flow to this browser", "auth", body=StartRequest,
             response=StartAnswer, auth=False, errors=(401, 404)),
    Endpoint("GET", "/auth/oauth/{provider}/callback", oauth_callback,
             "Where the provider sends the browser back (redirects to the page)", "auth",
             auth=False, status=303),
    Endpoint("POST", "/auth/oauth/exchange", exchange_grant,
             "Exchange the one-time sign-in code (same browser) for tokens", "auth",
             body=ExchangeRequest, response=Tokens, auth=False, errors=(400, 403)),
    Endpoint("GET", "/me/connections", list_connections,
             "The signed-in user's provider connections (never their tokens)", "me",
             response=ConnectionList),
    Endpoint("DELETE", "/me/connections/{provider}", disconnect,
             "Disconnect a provider (revoked there where the provider supports it)", "me",
             response=Disconnected, errors=(404,)),
]
