"""A workspace's own keys in the chat: its OpenAI or Anthropic key answers that workspace's
conversations, its Firecrawl key attaches web pages as context.

The key is read (and decrypted) per reply, so a key replaced or removed in the settings is
used or dropped from the next reply on; provider clients are cached per key fingerprint
(at most ``MAX_CACHED``, the least recently used closed first). With both an OpenAI and an
Anthropic key, OpenAI's answers. Usage is metered exactly as with the server's provider
(``usage_records``, the plan's allowance), with ``provider`` telling whose key it was.
"""

from __future__ import annotations

import dataclasses
import hashlib
import uuid
from collections import OrderedDict
from dataclasses import dataclass

from ai.config import AIConfig
from ai.firecrawl import FirecrawlClient, FirecrawlError, WebPage
from ai.providers.anthropic import AnthropicProvider
from ai.providers.base import Provider
from ai.providers.openai_compat import OpenAICompatProvider
from persistence import integrations as store
from persistence.crypto import Keyring
from persistence.db import Database

CHAT_PROVIDERS = ("openai", "anthropic")
MAX_CACHED = 32
SELECT_CONVERSATION_WORKSPACE = """
select p.workspace_id from public.conversations c
join public.projects p on p.id = c.project_id where c.id = $1
"""


@dataclass(frozen=True)
class WorkspaceUrls:
    openai: str = "https://api.openai.com"
    anthropic: str = "https://api.anthropic.com"
    firecrawl: str = "https://api.firecrawl.dev"
    scrape_timeout_s: float = 45.0


class WorkspaceAI:
    def __init__(
        self, config: AIConfig, db: Database, keyring: Keyring, urls: WorkspaceUrls
    ) -> None:
        self.config = config
        self.db = db
        self.keyring = keyring
        self.urls = urls
        self.firecrawl = FirecrawlClient(urls.firecrawl, urls.scrape_timeout_s)
        self._providers: OrderedDict[str, Provider] = OrderedDict()

    async def close(self) -> None:
        for provider in self._providers.values():
            await provider.close()
        self._providers.clear()

    async def provider_for(self, workspace_id: uuid.UUID) -> Provider | None:
        """The chat provider of the workspace's own key, or None (use the server's)."""
        async with self.db.acquire() as conn:
            key = await store.workspace_key(conn, self.keyring, workspace_id, CHAT_PROVIDERS)
            if key is None:
                return None
            await store.touch(conn, key.id)
        model = key.config.get("model") if isinstance(key.config.get("model"), str) else None
        fingerprint = hashlib.sha256(f"{key.provider}\0{key.api_key}\0{model}".encode()).hexdigest()
        provider = self._providers.get(fingerprint)
        if provider is None:
            provider = self._make(key.provider, key.api_key, model)
            self._providers[fingerprint] = provider
            while len(self._providers) > MAX_CACHED:
                _, old = self._providers.popitem(last=False)
                await old.close()
        else:
            self._providers.move_to_end(fingerprint)
        return provider

    def _make(self, provider: str, api_key: str, model: str | None) -> Provider:
        if provider == "anthropic":
            config = dataclasses.replace(
                self.config, anthropic_api_key=api_key, anthropic_base_url=self.urls.anthropic,
                model=model,
            )
            made: Provider = AnthropicProvider(config)
            made.name = "anthropic:workspace"
            return made
        return OpenAICompatProvider(
            self.config, self.urls.openai, api_key, model or "gpt-4o-mini",
            name="openai:workspace",
        )

    async def web_page(self, conversation_id: uuid.UUID, url: str) -> WebPage:
        """The page at ``url`` as markdown, through the conversation's workspace's Firecrawl
        key; ``FirecrawlError`` when there is no key or Firecrawl fails."""
        async with self.db.acquire() as conn:
            workspace_id = await conn.fetchval(SELECT_CONVERSATION_WORKSPACE, conversation_id)
            key = (
                await store.workspace_key(conn, self.keyring, workspace_id, ("firecrawl",))
                if workspace_id is not None else None
            )
        if key is None:
            raise FirecrawlError(
                "firecrawl_not_configured",
                "this workspace has no Firecrawl key: an admin can add one in its settings",
            )
        page = await self.firecrawl.scrape(key.api_key, url)
        async with self.db.acquire() as conn:
            await store.touch(conn, key.id)
        return page
