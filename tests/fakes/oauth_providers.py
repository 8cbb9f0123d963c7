"""Local servers speaking GitHub's, GitLab's, Bitbucket's and Google's OAuth wire formats.

Each ``FakeOAuthProvider(flavor)`` plays one provider, with its documented shapes:
- the authorization endpoint (the user "consents" at once, or denies with
  ``error=access_denied``), which records the PKCE challenge, scope and nonce of the code;
- the token endpoint: form-encoded request, the provider's client authentication (GitHub,
  GitLab, Google: client_secret in the body; Bitbucket: HTTP Basic), PKCE S256 checked
  (Bitbucket ignores it), codes single-use and short-lived; answers as the provider does:
  GitHub 200 with ``{"error": "bad_verification_code"}`` (JSON when asked, else
  form-encoded), the others 400/401 with ``{"error": "invalid_grant"|"invalid_client"}``;
  refresh grants (GitLab and GitHub rotate the refresh token);
- the identity endpoints: GitHub ``/user`` + ``/user/emails``, GitLab ``/api/v4/user``,
  Bitbucket ``/2.0/user`` + ``/2.0/user/emails`` (paginated), Google's discovery document,
  JWKS and an RS256-signed ID token (with knobs to break its nonce, audience, issuer,
  expiry or signature);
- revocation: GitHub ``DELETE /applications/{client_id}/grant``, GitLab and Google RFC 7009.

One module for the four (about 440 lines): they share the code, token and refresh machinery
and differ in a few shapes, which read best side by side.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support.net import free_port

FLAVORS = ("github", "gitlab", "bitbucket", "google")


@dataclass
class FakeUser:
    id: str
    username: str
    name: str
    email: str
    email_verified: bool = True


@dataclass
class Code:
    user: FakeUser
    client_id: str
    redirect_uri: str
    scope: str
    challenge: str | None
    nonce: str | None
    offline: bool
    issued: float
    used: bool = False


@dataclass
class Token:
    user: FakeUser
    expires: float | None
    revoked: bool = False


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    form: dict[str, str]


def s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")


@dataclass
class FakeOAuthProvider:
    flavor: str
    client_id: str = "fake-client-id"
    client_secret: str = "fake-client-secret"
    user: FakeUser = field(default_factory=lambda: FakeUser(
        "4242", "octo", "Octo Cat", "octo@example.test"))
    deny: bool = False
    code_ttl_s: float = 600.0
    # None: tokens that never expire (GitHub OAuth apps); else seconds.
    access_ttl_s: float | None = 7200.0
    # Google's ID token: claims to override, or sign it with a key the JWKS does not have.
    id_token_overrides: dict[str, Any] = field(default_factory=dict)
    sign_with_unknown_key: bool = False
    port: int = field(default_factory=free_port)
    seen: list[Seen] = field(default_factory=list)
    codes: dict[str, Code] = field(default_factory=dict)
    access: dict[str, Token] = field(default_factory=dict)
    refresh: dict[str, Token] = field(default_factory=dict)
    revocations: list[dict[str, Any]] = field(default_factory=list)
    # GitHub's GET /user/repos answer (the repository objects, as GitHub shapes them).
    repositories: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        assert self.flavor in FLAVORS
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self._runner: web.AppRunner | None = None

    # -- addresses for the server's settings --------------------------------------------

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """The environment variables pointing the server at this fake."""
        prefix = self.flavor.upper()
        env = {f"{prefix}_CLIENT_ID": self.client_id,
               f"{prefix}_CLIENT_SECRET": self.client_secret}
        if self.flavor == "github":
            env |= {"GITHUB_URL": self.url, "GITHUB_API_URL": self.url + "/api"}
        elif self.flavor == "gitlab":
            env |= {"GITLAB_URL": self.url}
        elif self.flavor == "bitbucket":
            env |= {"BITBUCKET_URL": self.url, "BITBUCKET_API_URL": self.url + "/2.0"}
        else:
            env |= {"GOOGLE_ISSUER": self.url}
        return env

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(middlewares=[self._record])
        routes = {
            "github": [
                web.get("/login/oauth/authorize", self.authorize),
                web.post("/login/oauth/access_token", self.token),
                web.get("/api/user", self.github_user),
                web.get("/api/user/emails", self.github_emails),
                web.get("/api/user/repos", self.github_repos),
                web.delete("/api/applications/{client_id}/grant", self.github_revoke),
            ],
            "gitlab": [
                web.get("/oauth/authorize", self.authorize),
                web.post("/oauth/token", self.token),
                web.get("/api/v4/user", self.gitlab_user),
                web.post("/oauth/revoke", self.rfc7009_revoke),
            ],
            "bitbucket": [
                web.get("/site/oauth2/authorize", self.authorize),
                web.post("/site/oauth2/access_token", self.token),
                web.get("/2.0/user", self.bitbucket_user),
                web.get("/2.0/user/emails", self.bitbucket_emails),
            ],
            "google": [
                web.get("/.well-known/openid-configuration", self.discovery),
                web.get("/o/oauth2/v2/auth", self.authorize),
                web.post("/token", self.token),
                web.get("/oauth2/v3/certs", self.jwks),
                web.post("/revoke", self.rfc7009_revoke),
            ],
        }[self.flavor]
        app.add_routes(routes)
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        form: dict[str, str] = {}
        if request.content_type == "application/x-www-form-urlencoded":
            form = {k: str(v) for k, v in (await request.post()).items()}
        self.seen.append(Seen(request.method, request.path, dict(request.headers), form))
        result: web.StreamResponse = await handler(request)
        return result

    def requests_to(self, path: str) -> list[Seen]:
        return [s for s in self.seen if s.path == path]

    # -- authorization ------------------------------------------------------------------

    async def authorize(self, request: web.Request) -> web.Response:
        q = request.query
        redirect_uri = q.get("redirect_uri", "")
        if q.get("client_id") != self.client_id or not redirect_uri:
            return web.Response(status=400, text="unknown client or no redirect_uri")
        if q.get("response_type") != "code":
            return web.Response(status=400, text="response_type must be code")
        state = q.get("state", "")
        if self.deny:
            params = {"error": "access_denied", "state": state,
                      "error_description": "The user has denied your application access."}
            raise web.HTTPFound(f"{redirect_uri}?{urlencode(params)}")
        challenge = q.get("code_challenge")
        pkce = challenge and q.get("code_challenge_method") == "S256"
        if self.flavor != "bitbucket" and not pkce:
            return web.Response(status=400, text="PKCE S256 required")
        code = secrets.token_urlsafe(20)
        self.codes[code] = Code(
            self.user, self.client_id, redirect_uri, q.get("scope", ""),
            challenge if self.flavor != "bitbucket" else None, q.get("nonce"),
            q.get("access_type") == "offline", time.time(),
        )
        raise web.HTTPFound(f"{redirect_uri}?{urlencode({'code': code, 'state': state})}")

    def last_code(self) -> Code:
        return list(self.codes.values())[-1]

    # -- token endpoint -----------------------------------------------------------------

    def _client_ok(self, request: web.Request, form: dict[str, str]) -> bool:
        header = request.headers.get("Authorization", "")
        if header.startswith("Basic "):
            ident, _, secret = base64.b64decode(header[6:]).decode().partition(":")
        elif self.flavor == "bitbucket":
            return False  # Bitbucket wants HTTP Basic
        else:
            ident, secret = form.get("client_id", ""), form.get("client_secret", "")
        return ident == self.client_id and secret == self.client_secret

    def _error(self, request: web.Request, error: str, description: str,
               status: int = 400) -> web.Response:
        if self.flavor == "github":
            error = {"invalid_grant": "bad_verification_code",
                     "invalid_client": "incorrect_client_credentials"}.get(error, error)
            return self._github_answer(request, {
                "error": error, "error_description": description,
                "error_uri": "https://docs.github.com/apps/troubleshooting"})
        return web.json_response({"error": error, "error_description": description},
                                 status=status)

    def _github_answer(self, request: web.Request, body: dict[str, Any]) -> web.Response:
        # GitHub answers JSON only when asked to, form-encoded otherwise; errors with 200.
        if "json" in request.headers.get("Accept", ""):
            return web.json_response(body)
        return web.Response(text=urlencode({k: str(v) for k, v in body.items()}),
                            content_type="application/x-www-form-urlencoded")

    async def token(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        if not self._client_ok(request, form):
            return self._error(request, "invalid_client", "Client authentication failed.", 401)
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            return self._code_grant(request, form)
        if grant_type == "refresh_token":
            return self._refresh_grant(request, form)
        return self._error(request, "unsupported_grant_type", f"{grant_type} is not supported")

    def _code_grant(self, request: web.Request, form: dict[str, str]) -> web.Response:
        code = self.codes.get(form.get("code", ""))
        bad = "The provided authorization grant is invalid, expired, revoked, does not match " \
              "the redirection URI used in the authorization request, or was issued to " \
              "another client."
        if code is None or code.used or time.time() - code.issued > self.code_ttl_s:
            return self._error(request, "invalid_grant", bad)
        if form.get("redirect_uri") != code.redirect_uri:
            return self._error(request, "invalid_grant", bad)
        if code.challenge is not None and s256(form.get("code_verifier", "")) != code.challenge:
            return self._error(request, "invalid_grant", "Invalid code verifier.")
        code.used = True
        return self._issue(request, code.user, code.scope, code.nonce, code.offline)

    def _refresh_grant(self, request: web.Request, form: dict[str, str]) -> web.Response:
        given = form.get("refresh_token", "")
        known = self.refresh.get(given)
        if known is None or known.revoked:
            return self._error(request, "invalid_grant", "The refresh token is invalid.")
        rotate = self.flavor in ("gitlab", "github")
        if rotate:
            known.revoked = True
        return self._issue(request, known.user, "", None, True,
                           keep_refresh=None if rotate else given)

    def _issue(self, request: web.Request, user: FakeUser, scope: str, nonce: str | None,
               offline: bool, keep_refresh: str | None = None) -> web.Response:
        access = f"{self.flavor[:3]}_at_{secrets.token_urlsafe(16)}"
        expires = time.time() + self.access_ttl_s if self.access_ttl_s else None
        self.access[access] = Token(user, expires)
        body: dict[str, Any] = {"access_token": access}
        refresh: str | None = None
        if self.access_ttl_s is not None and (self.flavor != "google" or offline):
            refresh = keep_refresh or f"{self.flavor[:3]}_rt_{secrets.token_urlsafe(16)}"
            self.refresh[refresh] = Token(user, None)
        if self.flavor == "github":
            body |= {"token_type": "bearer", "scope": scope.replace(" ", ",")}
            if self.access_ttl_s is not None:
                body |= {"expires_in": int(self.access_ttl_s), "refresh_token": refresh,
                         "refresh_token_expires_in": 15897600}
            return self._github_answer(request, body)
        if self.access_ttl_s is not None:
            body["expires_in"] = int(self.access_ttl_s)
        if refresh:
            body["refresh_token"] = refresh
        if self.flavor == "gitlab":
            body |= {"token_type": "Bearer", "scope": scope, "created_at": int(time.time())}
        elif self.flavor == "bitbucket":
            body |= {"token_type": "bearer", "scopes": "account email",
                     "state": "authorization_code"}
        else:
            body |= {"token_type": "Bearer", "scope": scope, "id_token": self.id_token(
                user, nonce, access)}
        return web.json_response(body)

    # -- Google: discovery, keys, ID token ----------------------------------------------

    async def discovery(self, request: web.Request) -> web.Response:
        return web.json_response({
            "issuer": self.url,
            "authorization_endpoint": self.url + "/o/oauth2/v2/auth",
            "token_endpoint": self.url + "/token",
            "userinfo_endpoint": self.url + "/v1/userinfo",
            "revocation_endpoint": self.url + "/revoke",
            "jwks_uri": self.url + "/oauth2/v3/certs",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "scopes_supported": ["openid", "email", "profile"],
            "code_challenge_methods_supported": ["plain", "S256"],
        })

    async def jwks(self, request: web.Request) -> web.Response:
        public = jwt.algorithms.RSAAlgorithm.to_jwk(self._key.public_key(), as_dict=True)
        public |= {"kid": "fake-key-1", "use": "sig", "alg": "RS256"}
        return web.json_response({"keys": [public]})

    def id_token(self, user: FakeUser, nonce: str | None, access_token: str) -> str:
        now = int(time.time())
        digest = hashlib.sha256(access_token.encode()).digest()
        claims: dict[str, Any] = {
            "iss": self.url, "azp": self.client_id, "aud": self.client_id, "sub": user.id,
            "email": user.email, "email_verified": user.email_verified, "name": user.name,
            "picture": "https://example.test/a.png", "iat": now, "exp": now + 3600,
            "at_hash": base64.urlsafe_b64encode(digest[:16]).decode().rstrip("="),
        }
        if nonce is not None:
            claims["nonce"] = nonce
        claims |= self.id_token_overrides
        key = self._other_key if self.sign_with_unknown_key else self._key
        kid = "rotated-away" if self.sign_with_unknown_key else "fake-key-1"
        return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})

    # -- identity endpoints -------------------------------------------------------------

    def _bearer(self, request: web.Request) -> FakeUser | None:
        header = request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        token = self.access.get(value) if scheme.lower() in ("bearer", "token") else None
        if token is None or token.revoked or (token.expires and token.expires < time.time()):
            return None
        return token.user

    def _unauthorized(self) -> web.Response:
        bodies = {
            "github": {"message": "Bad credentials",
                       "documentation_url": "https://docs.github.com/rest"},
            "gitlab": {"message": "401 Unauthorized"},
            "bitbucket": {"type": "error", "error": {"message": "Access token expired."}},
        }
        return web.json_response(bodies.get(self.flavor, {}), status=401)

    async def github_user(self, request: web.Request) -> web.Response:
        user = self._bearer(request)
        if user is None:
            return self._unauthorized()
        return web.json_response({
            "login": user.username, "id": int(user.id), "name": user.name, "email": None,
            "avatar_url": "https://avatars.example.test/u/1", "type": "User",
        })

    async def github_repos(self, request: web.Request) -> web.Response:
        if self._bearer(request) is None:
            return self._unauthorized()
        return web.json_response(self.repositories)

    def token_valid(self, token: str) -> bool:
        """Whether ``token`` is an access token this provider issued (a git host's check)."""
        return token in self.access

    async def github_emails(self, request: web.Request) -> web.Response:
        user = self._bearer(request)
        if user is None:
            return self._unauthorized()
        return web.json_response([
            {"email": f"{user.username}@users.noreply.example.test", "primary": False,
             "verified": True, "visibility": None},
            {"email": user.email, "primary": True, "verified": user.email_verified,
             "visibility": "private"},
        ])

    async def gitlab_user(self, request: web.Request) -> web.Response:
        user = self._bearer(request)
        if user is None:
            return self._unauthorized()
        return web.json_response({
            "id": int(user.id), "username": user.username, "name": user.name,
            "state": "active", "email": user.email, "avatar_url": None,
            "confirmed_at": "2024-01-02T03:04:05.000Z" if user.email_verified else None,
        })

    async def bitbucket_user(self, request: web.Request) -> web.Response:
        user = self._bearer(request)
        if user is None:
            return self._unauthorized()
        return web.json_response({
            "type": "user", "uuid": "{" + user.id + "}", "account_id": f"5f{user.id}",
            "nickname": user.username, "display_name": user.name,
            "links": {"avatar": {"href": "https://avatar.example.test/b.png"}},
        })

    async def bitbucket_emails(self, request: web.Request) -> web.Response:
        user = self._bearer(request)
        if user is None:
            return self._unauthorized()
        return web.json_response({"pagelen": 10, "page": 1, "size": 1, "values": [
            {"type": "email", "email": user.email, "is_primary": True,
             "is_confirmed": user.email_verified},
        ]})

    # -- revocation ---------------------------------------------------------------------

    def _revoke_all(self, user: FakeUser) -> None:
        for token in (*self.access.values(), *self.refresh.values()):
            if token.user is user:
                token.revoked = True

    async def github_revoke(self, request: web.Request) -> web.Response:
        header = request.headers.get("Authorization", "")
        ident, _, secret = base64.b64decode(header.removeprefix("Basic ")).decode().partition(":")
        if (ident, secret) != (self.client_id, self.client_secret):
            return web.json_response({"message": "Not Found"}, status=404)
        body = await request.json()
        token = self.access.get(body.get("access_token", ""))
        if token is None:
            return web.json_response({"message": "Not Found"}, status=404)
        self._revoke_all(token.user)
        self.revocations.append(body)
        return web.Response(status=204)

    async def rfc7009_revoke(self, request: web.Request) -> web.Response:
        form = {k: str(v) for k, v in (await request.post()).items()}
        token = self.refresh.get(form.get("token", "")) or self.access.get(form.get("token", ""))
        if token is None:
            return web.json_response({"error": "invalid_token"}, status=400)
        self._revoke_all(token.user)
        self.revocations.append(form)
        return web.json_response({})
