"""What a sign-in records about the client: ip and the user agent parsed by ua-parser."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from starlette.requests import Request
from ua_parser import parse

MAX_USER_AGENT = 512


@dataclass(frozen=True)
class ClientInfo:
    ip_address: str | None
    user_agent: str | None
    device_type: str | None
    browser: str | None
    os: str | None


def device_type(device_family: str | None, os_family: str | None, ua: str) -> str:
    lowered = ua.lower()
    if device_family == "Spider" or "bot" in lowered:
        return "bot"
    if "ipad" in lowered or "tablet" in lowered:
        return "tablet"
    if "mobi" in lowered or os_family in {"iOS", "Android"}:
        return "mobile"
    if ua and os_family and os_family != "Other":
        return "desktop"
    return "other"


def describe_user_agent(ua: str | None) -> tuple[str | None, str | None, str | None]:
    """(device_type, browser, os) for a User-Agent header."""
    if not ua:
        return None, None, None
    result = parse(ua)
    browser = result.user_agent.family if result.user_agent else None
    os_family = result.os.family if result.os else None
    device_family = result.device.family if result.device else None
    return device_type(device_family, os_family, ua), browser, os_family


def client_ip(request: Request) -> str | None:
    host = request.client.host if request.client else None
    if host is None:
        return None
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def client_info(request: Request) -> ClientInfo:
    ua = request.headers.get("user-agent")
    ua = ua[:MAX_USER_AGENT] if ua else None
    kind, browser, os_family = describe_user_agent(ua)
    return ClientInfo(client_ip(request), ua, kind, browser, os_family)
