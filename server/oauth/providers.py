"""The four providers' wire formats: endpoints, scopes, who the user is, how to revoke.

What differs between them (and is tested against a local server speaking each format,
``tests/fakes/oauth_providers.py``):

- GitHub: token auth client_secret_post; identity ``/user`` + ``/user/emails``, verified =
  ``verified`` of the primary address; revoke ``DELETE /applications/{client_id}/grant``.
- GitLab: client_secret_post; ``/api/v4/user``, verified = ``confirmed_at`` set; revoke
  RFC 7009 ``/oauth/revoke``.
- Bitbucket: client_secret_basic; ``/2.0/user`` + ``/2.0/user/emails``, verified =
  ``is_confirmed`` of the primary; no revocation endpoint.
- Google: client_secret_post; the ID token (``server.oauth.oidc``), ``email_verified``;
  revoke RFC 7009 at the discovered ``revocation_endpoint``.

GitHub answers token errors with HTTP 200 and ``{"error": ...}``, the others with 400/401;
``server.oauth.clients`` maps both (and form-encoded answers) to ``ProviderError``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx2

from persistence.oauth import TokenSet
from server.oauth.config import ProviderSettings
from server.oauth.errors import OAuthError, ProviderError
from server.oauth.oidc import OpenIDProviderInfo


@dataclass(frozen=True)
class Endpoints:
    authorize: str
    token: str


@dataclass(frozen=True)
class Identity:
    """Who the provider says signed in."""

    provider: str
    provider_user_id: str
    email: str | None
    email_verified: bool
    username: str | None = None
    name: str | None = None
    avatar_url: str | None = None

    def metadata(self) -> dict[str, Any]:
        return {
            "username": self.username, "email": self.email,
            "email_verified": self.email_verified, "name": self.name,
            "avatar_url": self.avatar_url,
        }


async def get_json(http: httpx2.AsyncClient, url: str, access_token: str) -> Any:
    """GET an API resource with the user's token; provider failures become ``ProviderError``."""
    try:
        resp = await http.get(url, headers={
            "Authorization": f"Bearer {access_token}", "Accept": "application/json",
        })
    except httpx2.HTTPError as exc:
        raise OAuthError(
            "provider_unreachable", f"{url} unreachable: {type(exc).__name__}", 502
        ) from exc
    if resp.status_code >= 400:
        raise ProviderError(
            "invalid_token" if resp.status_code in (401, 403) else "api_error",
            f"{url} answered {resp.status_code}",
        )
    try:
        return resp.json()
    except ValueError as exc:
        raise ProviderError("bad_response", f"{url} did not answer JSON") from exc


class Provider(ABC):
    name: str
    display_name: str
    token_auth_method = "client_secret_post"
    sign_in_scopes: tuple[str, ...] = ()
    connect_scopes: tuple[str, ...] = ()
    # The user name git uses with an OAuth token as password over HTTPS.
    git_username = "oauth2"
    uses_nonce = False

    def __init__(self, settings: ProviderSettings) -> None:
        self.settings = settings

    @property
    def client_id(self) -> str:
        return self.settings.client_id or ""

    def scopes(self, purpose: str) -> tuple[str, ...]:
        return self.connect_scopes if purpose == "connect" else self.sign_in_scopes

    def authorize_params(self, purpose: str) -> dict[str, str]:
        """Extra query parameters of the authorization request."""
        return {}

    @abstractmethod
    async def endpoints(self, http: httpx2.AsyncClient) -> Endpoints: ...

    @abstractmethod
    async def identity(
        self, http: httpx2.AsyncClient, token: Mapping[str, Any], nonce: str | None
    ) -> Identity: ...

    async def revoke(self, http: httpx2.AsyncClient, tokens: TokenSet) -> bool | None:
        """Revoke the grant at the provider: True done, False failed, None unsupported."""
        return None


def _primary_email(
    entries: Sequence[Mapping[str, Any]], email: str, primary: str, verified: str
) -> tuple[str | None, bool]:
    """(email, verified) of the primary address (of a verified one when none is primary).

    Never another address when the primary is unverified: the account would silently be
    made for an address the user did not choose.
    """
    chosen = next((e for e in entries if e.get(primary)), None)
    if chosen is None:
        chosen = next((e for e in entries if e.get(verified)), None)
    if chosen is None or not isinstance(chosen.get(email), str):
        return None, False
    return str(chosen[email]).strip().lower(), bool(chosen.get(verified))


class GitHub(Provider):
    name = "github"
    display_name = "GitHub"
    sign_in_scopes = ("read:user", "user:email")
    connect_scopes = ("read:user", "user:email", "repo")
    git_username = "x-access-token"

    async def endpoints(self, http: httpx2.AsyncClient) -> Endpoints:
        base = self.settings.base_url
        return Endpoints(f"{base}/login/oauth/authorize", f"{base}/login/oauth/access_token")

    async def identity(
        self, http: httpx2.AsyncClient, token: Mapping[str, Any], nonce: str | None
    ) -> Identity:
        access = str(token["access_token"])
        user = await get_json(http, f"{self.settings.api_url}/user", access)
        emails = await get_json(http, f"{self.settings.api_url}/user/emails", access)
        entries = [e for e in emails if isinstance(e, dict)] if isinstance(emails, list) else []
        email, verified = _primary_email(entries, "email", "primary", "verified")
        return Identity(
            self.name, str(user["id"]), email, verified, user.get("login"),
            user.get("name"), user.get("avatar_url"),
        )

    async def revoke(self, http: httpx2.AsyncClient, tokens: TokenSet) -> bool | None:
        # Deletes the whole authorization (every token of this app for the user).
        url = f"{self.settings.api_url}/applications/{self.client_id}/grant"
        try:
            resp = await http.request(
                "DELETE", url, json={"access_token": tokens.access_token},
                auth=(self.client_id, self.settings.client_secret or ""),
                headers={"Accept": "application/vnd.github+json"},
            )
        except httpx2.HTTPError:
            return False
        # 404: the grant is already gone, which is what we wanted.
        return resp.status_code in (204, 404)


class GitLab(Provider):
    name = "gitlab"
    display_name = "GitLab"
    sign_in_scopes = ("read_user",)
    connect_scopes = ("read_user", "read_api", "read_repository", "write_repository")

    async def endpoints(self, http: httpx2.AsyncClient) -> Endpoints:
        base = self.settings.base_url
        return Endpoints(f"{base}/oauth/authorize", f"{base}/oauth/token")

    async def identity(
        self, http: httpx2.AsyncClient, token: Mapping[str, Any], nonce: str | None
    ) -> Identity:
        user = await get_json(http, f"{self.settings.api_url}/user", str(token["access_token"]))
        email = user.get("email")
        return Identity(
            self.name, str(user["id"]), str(email).strip().lower() if email else None,
            bool(email) and user.get("confirmed_at") is not None, user.get("username"),
            user.get("name"), user.get("avatar_url"),
        )

    async def revoke(self, http: httpx2.AsyncClient, tokens: TokenSet) -> bool | None:
        return await rfc7009_revoke(
            http, f"{self.settings.base_url}/oauth/revoke", self.settings, tokens
        )


class Bitbucket(Provider):
    name = "bitbucket"
    display_name = "Bitbucket"
    token_auth_method = "client_secret_basic"
    # Bitbucket Cloud grants the scopes configured on the OAuth consumer, not requested ones.
    git_username = "x-token-auth"

    async def endpoints(self, http: httpx2.AsyncClient) -> Endpoints:
        base = self.settings.base_url
        return Endpoints(f"{base}/site/oauth2/authorize", f"{base}/site/oauth2/access_token")

    async def identity(
        self, http: httpx2.AsyncClient, token: Mapping[str, Any], nonce: str | None
    ) -> Identity:
        access = str(token["access_token"])
        user = await get_json(http, f"{self.settings.api_url}/user", access)
        page = await get_json(http, f"{self.settings.api_url}/user/emails", access)
        values = page.get("values") if isinstance(page, dict) else None
        entries = [e for e in values if isinstance(e, dict)] if isinstance(values, list) else []
        email, verified = _primary_email(entries, "email", "is_primary", "is_confirmed")
        avatar = ((user.get("links") or {}).get("avatar") or {}).get("href")
        return Identity(
            self.name, str(user.get("uuid") or user["account_id"]), email, verified,
            user.get("username") or user.get("nickname"), user.get("display_name"), avatar,
        )


class Google(Provider):
    name = "google"
    display_name = "Google"
    sign_in_scopes = ("openid", "email", "profile")
    connect_scopes = ("openid", "email", "profile")
    uses_nonce = True

    def __init__(self, settings: ProviderSettings) -> None:
        super().__init__(settings)
        self.openid = OpenIDProviderInfo(settings.base_url)

    def authorize_params(self, purpose: str) -> dict[str, str]:
        # A refresh token only for an explicit connection (sign-in needs the identity once).
        return {"access_type": "offline", "prompt": "consent"} if purpose == "connect" else {}

    async def endpoints(self, http: httpx2.AsyncClient) -> Endpoints:
        meta = await self.openid.metadata(http)
        return Endpoints(meta["authorization_endpoint"], meta["token_endpoint"])

    async def identity(
        self, http: httpx2.AsyncClient, token: Mapping[str, Any], nonce: str | None
    ) -> Identity:
        claims = await self.openid.verify_id_token(http, token, self.client_id, nonce)
        email = claims.get("email")
        return Identity(
            self.name, str(claims["sub"]), str(email).strip().lower() if email else None,
            claims.get("email_verified") is True, None, claims.get("name"),
            claims.get("picture"),
        )

    async def revoke(self, http: httpx2.AsyncClient, tokens: TokenSet) -> bool | None:
        meta = await self.openid.metadata(http)
        url = meta.get("revocation_endpoint")
        if not url:
            return None
        return await rfc7009_revoke(http, str(url), self.settings, tokens)


async def rfc7009_revoke(
    http: httpx2.AsyncClient, url: str, settings: ProviderSettings, tokens: TokenSet
) -> bool:
    """Revoke the refresh token (which ends its access tokens) or else the access token."""
    token = tokens.refresh_token or tokens.access_token
    hint = "refresh_token" if tokens.refresh_token else "access_token"
    try:
        resp = await http.post(url, data={
            "token": token, "token_type_hint": hint,
            "client_id": settings.client_id or "", "client_secret": settings.client_secret or "",
        })
    except httpx2.HTTPError:
        return False
    return resp.status_code == 200


PROVIDERS: dict[str, Callable[[ProviderSettings], Provider]] = {
    "github": GitHub,
    "gitlab": GitLab,
    "bitbucket": Bitbucket,
    "google": Google,
}
