"""Push webhooks of GitHub, GitLab and Bitbucket Cloud: verification and reading (pure).

Each repository has its own secret (made when it is connected). Verified on the raw body
bytes, before anything is parsed:
- **GitHub**: ``X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>``; event in
  ``X-GitHub-Event``, delivery id in ``X-GitHub-Delivery``.
- **GitLab**: ``X-Gitlab-Token: <secret>`` (GitLab sends the secret itself); event in
  ``X-Gitlab-Event``, delivery id in ``X-Gitlab-Event-UUID``.
- **Bitbucket Cloud**: ``X-Hub-Signature: sha256=<hex HMAC-SHA256(secret, body)>``; event
  in ``X-Event-Key``, delivery id in ``X-Request-UUID``.
Comparisons are constant-time. A delivery without an id is refused: deduplication (GitHub
and Bitbucket retry, and deliver out of order) is by that id.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

PROVIDERS = ("github", "gitlab", "bitbucket")
MAX_BODY_BYTES = 5 * 1024 * 1024  # GitHub caps payloads at 25 MB; pushes are far smaller


class WebhookRejected(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Delivery:
    provider: str
    event_type: str
    delivery_id: str
    payload: dict[str, Any]
    signature: str | None
    is_push: bool
    branches: tuple[str, ...] = field(default=())  # branches the push updated


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name.lower():
            return value
    return None


def _hmac_ok(secret: str, raw: bytes, header: str | None) -> bool:
    if not header or not header.startswith("sha256="):
        return False
    expected = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, header[len("sha256="):].strip().lower())


def verify(provider: str, headers: Mapping[str, str], raw: bytes, secret: str) -> Delivery:
    """The delivery once its signature (or token) is right; ``WebhookRejected`` otherwise."""
    if provider == "github":
        signature = _header(headers, "X-Hub-Signature-256")
        ok = _hmac_ok(secret, raw, signature)
        event, delivery = _header(headers, "X-GitHub-Event"), _header(headers, "X-GitHub-Delivery")
    elif provider == "gitlab":
        token = _header(headers, "X-Gitlab-Token")
        signature = None  # the token is the secret itself: never stored
        ok = token is not None and hmac.compare_digest(token.encode(), secret.encode())
        event = _header(headers, "X-Gitlab-Event")
        delivery = _header(headers, "X-Gitlab-Event-UUID")
    elif provider == "bitbucket":
        signature = _header(headers, "X-Hub-Signature")
        ok = _hmac_ok(secret, raw, signature)
        event, delivery = _header(headers, "X-Event-Key"), _header(headers, "X-Request-UUID")
    else:
        raise WebhookRejected(404, "not_found", "no such webhook")
    if not ok:
        raise WebhookRejected(401, "invalid_signature", "the signature does not match")
    if not event or not delivery or len(delivery) > 200:
        raise WebhookRejected(400, "invalid_delivery", "the event or delivery id is missing")
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise WebhookRejected(400, "invalid_payload", "the body is not JSON") from None
    if not isinstance(payload, dict):
        raise WebhookRejected(400, "invalid_payload", "the body is not a JSON object")
    is_push, branches = _pushed(provider, event, payload)
    return Delivery(provider, event, delivery, payload, signature, is_push, branches)


def _pushed(provider: str, event: str, payload: dict[str, Any]) -> tuple[bool, tuple[str, ...]]:
    """Whether this is a push, and which branches it moved."""
    if provider in ("github", "gitlab"):
        if event not in ("push", "Push Hook"):
            return False, ()
        ref = payload.get("ref")
        if isinstance(ref, str) and ref.startswith("refs/heads/"):
            return True, (ref[len("refs/heads/"):],)
        return True, ()
    if event != "repo:push":
        return False, ()
    names: list[str] = []
    changes = (payload.get("push") or {}).get("changes") or []
    for change in changes if isinstance(changes, list) else []:
        for side in ("new", "old"):
            ref = (change or {}).get(side) if isinstance(change, dict) else None
            if isinstance(ref, dict) and ref.get("type") == "branch" and \
                    isinstance(ref.get("name"), str):
                names.append(ref["name"])
                break
    return True, tuple(dict.fromkeys(names))
