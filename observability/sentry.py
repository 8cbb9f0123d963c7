"""Sentry, when ``SENTRY_DSN`` is set: sentry-sdk with only what we send explicitly.

No automatic integrations: the error reporter (``observability.errors``) is the one place that
captures, so every event it sends is one ``error_logs`` row whose ``sentry_issue_id`` is the
event id Sentry returns (Sentry groups events into issues on its side; the event id is what the
sender knows, and Sentry's UI finds the issue from it). No local variables, no request bodies,
and every event passes through ``observability.redact`` before it leaves the process.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from observability.redact import redact_value

log = logging.getLogger(__name__)


def scrub_event(event: dict[str, Any], hint: dict[str, Any]) -> dict[str, Any]:
    """``before_send``: credentials out of messages, exception values, contexts and extras."""
    for key in ("message", "logentry", "contexts", "extra", "request", "tags", "breadcrumbs"):
        if key in event:
            event[key] = redact_value(event[key])
    for value in (event.get("exception") or {}).get("values") or []:
        if isinstance(value.get("value"), str):
            value["value"] = redact_value(value["value"])
    return event


class Sentry:
    """The process's Sentry client (sentry-sdk keeps one per process)."""

    def __init__(self, dsn: str, *, environment: str, release: str, server_name: str) -> None:
        import sentry_sdk

        self._sdk = sentry_sdk
        sentry_sdk.init(
            dsn=dsn,
            environment=environment,
            release=release,
            server_name=server_name,
            default_integrations=False,
            auto_enabling_integrations=False,
            integrations=[],
            # sentry-sdk 3: no user details, no local variables of stack frames, no bodies.
            data_collection={
                "user_info": False, "stack_frame_variables": False, "http_bodies": [],
            },
            max_request_body_size="never",
            before_send=scrub_event,  # type: ignore[arg-type]
        )

    def capture(
        self, exc: BaseException | None, message: str, *, level: str,
        context: dict[str, Any], user_id: str | None,
    ) -> str | None:
        """Send one event; its id, or None when the SDK dropped it."""
        kwargs: dict[str, Any] = {"level": level, "contexts": {"icreate": context}}
        if user_id is not None:
            kwargs["user"] = {"id": user_id}
        try:
            if exc is not None:
                return self._sdk.capture_exception(exc, **kwargs)
            return self._sdk.capture_message(message, **kwargs)
        except Exception:  # the SDK must never take the reporter down with it
            log.warning("sentry: capture failed", exc_info=True)
            return None

    async def close(self, timeout_s: float = 2.0) -> None:
        """Send what is queued (the SDK's transport thread), then stop the client."""
        client = self._sdk.get_client()
        await asyncio.to_thread(client.close, timeout_s)
