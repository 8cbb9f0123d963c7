"""OpenID Connect: discovery, the JWKS, and the ID-token checks (Google).

The ID token is verified with Authlib's OIDC claim rules on top of joserfc (what Authlib's
own clients use since ``authlib.jose`` was deprecated): the signature against the issuer's
JWKS (fetched again once when a token names an unknown key id: keys rotate), ``iss`` equal
to the discovered issuer, ``aud`` containing our client id (Authlib alone would accept
another audience when ``azp`` names us), ``exp``/``iat`` within a minute of leeway, the
``nonce`` we sent, and ``at_hash`` against the access token when present.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import httpx2
from authlib.oidc.core import CodeIDToken
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from joserfc.jws import JWSRegistry

from server.oauth.errors import OAuthError

METADATA_TTL_S = 3600.0
LEEWAY_S = 60
# Google's ID tokens have carried both forms of its issuer.
ISSUER_ALIASES = {"https://accounts.google.com": ("accounts.google.com",)}


class InvalidIdToken(OAuthError):
    def __init__(self, message: str) -> None:
        super().__init__("invalid_id_token", message)


class OpenIDProviderInfo:
    """The discovery document and key set of one issuer, cached."""

    def __init__(self, issuer: str) -> None:
        self.issuer = issuer.rstrip("/")
        self._metadata: dict[str, Any] | None = None
        self._fetched_at = 0.0
        self._jwks: dict[str, Any] | None = None

    async def metadata(self, http: httpx2.AsyncClient) -> dict[str, Any]:
        if self._metadata is None or time.monotonic() - self._fetched_at > METADATA_TTL_S:
            url = f"{self.issuer}/.well-known/openid-configuration"
            meta = await _fetch_json(http, url)
            if meta.get("issuer", "").rstrip("/") != self.issuer:
                raise OAuthError(
                    "provider_error", f"discovery names issuer {meta.get('issuer')!r}", 502
                )
            self._metadata, self._fetched_at, self._jwks = meta, time.monotonic(), None
        return self._metadata

    async def key_set(self, http: httpx2.AsyncClient, *, refresh: bool = False) -> KeySet:
        if self._jwks is None or refresh:
            meta = await self.metadata(http)
            self._jwks = await _fetch_json(http, str(meta["jwks_uri"]))
        return KeySet.import_key_set(self._jwks)  # type: ignore[arg-type]

    async def verify_id_token(
        self,
        http: httpx2.AsyncClient,
        token: Mapping[str, Any],
        client_id: str,
        nonce: str | None,
    ) -> dict[str, Any]:
        raw = token.get("id_token")
        if not isinstance(raw, str):
            raise InvalidIdToken("the token answer has no id_token")
        meta = await self.metadata(http)
        algorithms = list(meta.get("id_token_signing_alg_values_supported") or ["RS256"])
        # "none" and HMAC algorithms are never acceptable for a third party's ID token.
        algorithms = [a for a in algorithms if a != "none" and not a.startswith("HS")]
        registry = JWSRegistry(algorithms=algorithms)
        try:
            try:
                decoded = jwt.decode(raw, await self.key_set(http), registry=registry)
            except InvalidKeyIdError:
                decoded = jwt.decode(raw, await self.key_set(http, refresh=True), registry=registry)
        except (JoseError, ValueError) as exc:
            raise InvalidIdToken(f"ID token signature not valid: {exc}") from exc
        issuers = [self.issuer, *ISSUER_ALIASES.get(self.issuer, ())]
        claims = CodeIDToken(
            decoded.claims,
            decoded.header,
            {
                "iss": {"essential": True, "values": issuers},
                "aud": {"essential": True, "values": [client_id]},
            },
            {"nonce": nonce, "client_id": client_id,
             "access_token": token.get("access_token")},
        )
        if nonce and claims.get("nonce") != nonce:
            raise InvalidIdToken("ID token nonce does not match the one sent")
        try:
            claims.validate(leeway=LEEWAY_S)
        except (JoseError, ValueError) as exc:
            raise InvalidIdToken(f"ID token claims not valid: {exc}") from exc
        return dict(claims)


async def _fetch_json(http: httpx2.AsyncClient, url: str) -> dict[str, Any]:
    try:
        resp = await http.get(url, headers={"Accept": "application/json"})
        resp.raise_for_status()
        data = resp.json()
    except (httpx2.HTTPError, ValueError) as exc:
        raise OAuthError("provider_unreachable", f"{url}: {type(exc).__name__}", 502) from exc
    if not isinstance(data, dict):
        raise OAuthError("provider_error", f"{url} did not answer a JSON object", 502)
    return data
