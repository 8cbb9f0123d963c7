"""What the HTTP providers share: one aiohttp session, error mapping, retry before output."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any

from ai.config import AIConfig
from ai.providers.base import (
    ChatMessage,
    ProviderError,
    ProviderEvent,
    ToolSpec,
    backoff_delay,
    error_from_body,
    parse_retry_after,
)
from ai.sse import SSEError, SSEEvent, iter_sse

if TYPE_CHECKING:
    import aiohttp

log = logging.getLogger(__name__)

MAX_ERROR_BODY = 64 * 1024


class HttpStreamClient:
    """Owns one ``aiohttp.ClientSession`` and opens SSE streams with the retry policy."""

    def __init__(self, config: AIConfig) -> None:
        self.config = config
        self._session: aiohttp.ClientSession | None = None
        self.requests = 0
        self.last_error: str | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            import aiohttp  # deferred: 0.3-0.6 s of the server's start-up (bench/README.md)

            timeout = aiohttp.ClientTimeout(
                total=None,
                connect=self.config.connect_timeout_s,
                sock_read=max(self.config.idle_timeout_s, self.config.first_token_timeout_s),
            )
            self._session = aiohttp.ClientSession(timeout=timeout, auto_decompress=True)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def sse(
        self, url: str, headers: dict[str, str], body: dict[str, Any]
    ) -> AsyncIterator[SSEEvent]:
        """SSE events of one POST; HTTP and transport failures become ``ProviderError``.

        The response is closed (not returned to the pool) when the consumer stops early,
        so the provider sees the disconnect and stops generating.
        """
        import aiohttp  # deferred with session(); already loaded by then

        self.requests += 1
        finished = False
        try:
            resp = await self.session().post(
                url, data=json.dumps(body), headers={**headers, "accept": "text/event-stream"}
            )
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ProviderError(
                "provider_unreachable", f"AI provider unreachable: {type(exc).__name__}",
                retryable=True,
            ) from exc
        try:
            if resp.status >= 400:
                raw = await read_limited(resp, MAX_ERROR_BODY)
                try:
                    parsed: Any = json.loads(raw)
                except ValueError:
                    parsed = {"error": {"message": raw.decode("utf-8", "replace")[:500]}}
                err = error_from_body(resp.status, parsed, f"AI provider answered {resp.status}")
                err.retry_after = parse_retry_after(resp.headers)
                raise err
            try:
                async for event in iter_sse(resp.content.iter_any()):
                    yield event
            except SSEError as exc:
                raise ProviderError("provider_protocol", str(exc)) from exc
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise ProviderError(
                    "stream_interrupted",
                    f"AI provider stream broke: {type(exc).__name__}",
                    retryable=True,
                ) from exc
            finished = True
        finally:
            if finished:
                resp.release()
            else:
                resp.close()


async def read_limited(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    parts: list[bytes] = []
    size = 0
    while size < limit:
        chunk = await resp.content.read(limit - size)
        if not chunk:
            break
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts)


async def with_retries(
    attempt: Callable[[], AsyncIterator[ProviderEvent]], config: AIConfig, client: HttpStreamClient
) -> AsyncIterator[ProviderEvent]:
    """Run ``attempt`` again on retryable errors, but only while nothing was yielded yet."""
    tries = 0
    while True:
        emitted = False
        try:
            events = attempt()
            async with contextlib.aclosing(events):  # type: ignore[type-var]
                async for event in events:
                    emitted = True
                    yield event
            client.last_error = None
            return
        except ProviderError as exc:
            client.last_error = exc.code
            if emitted or not exc.retryable or tries >= config.max_retries:
                raise
            delay = backoff_delay(tries, exc.retry_after, config.retry_base_s,
                                  config.retry_max_wait_s)
            log.info("AI provider %s (%s); retry %d in %.2fs", exc.code, exc.status,
                     tries + 1, delay)
        tries += 1
        await asyncio.sleep(delay)


class HttpProvider(ABC):
    """What every HTTP streaming provider shares: the client, its lifecycle, retries.

    Subclasses say how one attempt is made (``_attempt``); ``stream`` wraps it in the
    retry-before-the-first-token policy of ``with_retries``.
    """

    name: str
    model: str
    supports_tools = True

    def __init__(self, config: AIConfig) -> None:
        self.config = config
        self.client = HttpStreamClient(config)

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        await self.client.close()

    def health(self) -> dict[str, Any]:
        return {"provider": self.name, "state": "ready", "model": self.model,
                "last_error": self.client.last_error}

    def stream(
        self, messages: list[ChatMessage], *, max_tokens: int,
        tools: Sequence[ToolSpec] | None = None,
    ) -> AsyncIterator[ProviderEvent]:
        return with_retries(
            lambda: self._attempt(messages, max_tokens, tools or ()), self.config, self.client
        )

    @abstractmethod
    def _attempt(
        self, messages: list[ChatMessage], max_tokens: int, tools: Sequence[ToolSpec]
    ) -> AsyncIterator[ProviderEvent]:
        """One request to the provider, as a stream of events."""
