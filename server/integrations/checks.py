"""Is this API key good? One cheap authenticated call per provider, before a key is stored.

| provider | call | rejected |
|---|---|---|
| openai | ``GET {openai}/v1/models`` (Bearer) | 401 |
| anthropic | ``GET {anthropic}/v1/models`` (``x-api-key``, ``anthropic-version``) | 401, 403 |
| firecrawl | ``GET {firecrawl}/v1/team/credit-usage`` (Bearer) | 401, 403 |
| vercel | ``GET {vercel}/v2/user`` (Bearer) | 401, 403 (``invalidToken``) |
| github | ``GET {github}/user`` (Bearer) | 401 |

A key the provider recognises but limits (402 no credit, 429 rate limited) is accepted:
it is the right key. A provider that cannot be reached or fails (5xx) stores nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from server.integrations.config import IntegrationsConfig


class KeyRejected(Exception):
    """The provider says the key is not valid."""


class CheckUnavailable(Exception):
    """The provider could not be asked (network, 5xx): try again later."""


@dataclass(frozen=True)
class Check:
    url: str
    headers: dict[str, str]


def _bearer(url: str, key: str) -> Check:
    return Check(url, {"Authorization": f"Bearer {key}", "Accept": "application/json"})


CHECKS: dict[str, Callable[[IntegrationsConfig, str], Check]] = {
    "openai": lambda c, k: _bearer(f"{c.openai_url}/v1/models", k),
    "anthropic": lambda c, k: Check(f"{c.anthropic_url}/v1/models", {
        "x-api-key": k, "anthropic-version": c.anthropic_version}),
    "firecrawl": lambda c, k: _bearer(f"{c.firecrawl_url}/v1/team/credit-usage", k),
    "vercel": lambda c, k: _bearer(f"{c.vercel_url}/v2/user", k),
    "github": lambda c, k: _bearer(f"{c.github_api_url}/user", k),
}


async def check_key(config: IntegrationsConfig, provider: str, api_key: str) -> None:
    """Return when ``api_key`` works for ``provider``; raise ``KeyRejected`` or
    ``CheckUnavailable``."""
    check = CHECKS[provider](config, api_key)
    import aiohttp  # deferred: 0.3-0.6 s of the server's start-up (bench/README.md)

    timeout = aiohttp.ClientTimeout(total=config.timeout_s)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as session, session.get(
            check.url, headers=check.headers, allow_redirects=False
        ) as resp:
            status = resp.status
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise CheckUnavailable(f"{provider} unreachable: {type(exc).__name__}") from exc
    if status in (401, 403):
        raise KeyRejected(f"{provider} rejected this key ({status})")
    if status >= 500 or status not in (200, 402, 429):
        raise CheckUnavailable(f"{provider} answered {status}")
