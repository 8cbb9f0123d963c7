"""``GET /git/accounts/{provider}/repositories``: the repositories of the caller's connected
account at GitHub, GitLab or Bitbucket, to pick one to connect (``use_account: true``).

The provider's own REST API, with the user's token (refreshed when due,
``server.oauth.tokens.access_token``); the answer is normalised to ``{full_name, clone_url,
default_branch, private}``. One page (the 100 most recently updated): enough to pick from,
and a URL can always be typed instead.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from server.api.routing import Ctx, Endpoint
from server.errors import ApiError
from server.oauth.errors import NotConnected, OAuthError, ReconnectRequired
from server.oauth.providers import get_json
from server.oauth.tokens import access_token

LISTINGS = {
    "github": "/user/repos?per_page=100&sort=updated",
    "gitlab": "/projects?membership=true&per_page=100&order_by=last_activity_at",
    "bitbucket": "/repositories?role=member&pagelen=100&sort=-updated_on",
}


class AccountRepository(BaseModel):
    full_name: str
    clone_url: str
    default_branch: str | None
    private: bool


class AccountRepositories(BaseModel):
    provider: str
    items: list[AccountRepository]


def _normalise(provider: str, raw: Any) -> list[dict[str, Any]]:
    entries = raw.get("values", []) if provider == "bitbucket" and isinstance(raw, dict) else raw
    found: list[dict[str, Any]] = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        if provider == "github":
            item = (entry.get("full_name"), entry.get("clone_url"), entry.get("default_branch"),
                    entry.get("private"))
        elif provider == "gitlab":
            item = (entry.get("path_with_namespace"), entry.get("http_url_to_repo"),
                    entry.get("default_branch"), entry.get("visibility") != "public")
        else:
            clone = next((link.get("href") for link in entry.get("links", {}).get("clone", [])
                          if isinstance(link, dict) and link.get("name") == "https"), None)
            item = (entry.get("full_name"), clone,
                    (entry.get("mainbranch") or {}).get("name"), entry.get("is_private"))
        name, url, branch, private = item
        if isinstance(name, str) and isinstance(url, str):
            found.append({"full_name": name, "clone_url": url,
                          "default_branch": branch if isinstance(branch, str) else None,
                          "private": bool(private)})
    return found


async def account_repositories(ctx: Ctx) -> dict[str, Any]:
    provider = str(ctx.params["provider"])
    if provider not in LISTINGS:
        raise ApiError(404, "not_found", "no such git provider")
    oauth = ctx.services.oauth
    try:
        token = await access_token(oauth, ctx.user_uuid, provider)
        settings = oauth.config.settings_for(provider)
        raw = await get_json(oauth.http, settings.api_url + LISTINGS[provider],
                             token.access_token)
    except (NotConnected, ReconnectRequired) as exc:
        raise ApiError(409, exc.code, exc.message) from None
    except OAuthError as exc:
        raise ApiError(502, exc.code, exc.message) from None
    return {"provider": provider, "items": _normalise(provider, raw)}


ENDPOINTS = [
    Endpoint("GET", "/git/accounts/{provider}/repositories", account_repositories,
             "The repositories of your connected account at a git provider", "git",
             response=AccountRepositories, errors=(409, 502)),
]
