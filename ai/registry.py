"""The configured provider, chosen by name from a lookup table, and whether it can answer.

``ProviderSlot.get()`` hands out the provider when it is usable (waiting for the
embedded model while it is still starting) and None when chat must answer with
``unavailable()``'s code: ``ai_installing`` while the embedded model's runtime is being
installed (at once, no wait), else ``ai_unavailable``.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ai.config import AIConfig
from ai.embedded import EmbeddedModelServer, server_installed
from ai.providers.anthropic import AnthropicProvider
from ai.providers.base import Provider
from ai.providers.openai_compat import OpenAICompatProvider
from ai.runtime_install import RuntimeInstaller

UNAVAILABLE = ("ai_unavailable", "AI provider not available")
INSTALLING = (
    "ai_installing",
    "the embedded AI model is being installed (the first start compiles llama.cpp, "
    "about 5 minutes): try again in a few minutes",
)


class ProviderSlot:
    name = "none"

    def __init__(self, config: AIConfig) -> None:
        self.config = config
        self.provider: Provider | None = None

    @property
    def context_tokens(self) -> int:
        return self.config.context_tokens

    @property
    def max_output_tokens(self) -> int:
        return self.config.max_output_tokens

    async def start(self) -> None:
        if self.provider is not None:
            await self.provider.start()

    async def get(self) -> Provider | None:
        return self.provider

    def unavailable(self) -> tuple[str, str]:
        """The error code and message for a chat that ``get()`` found no provider for."""
        return UNAVAILABLE

    async def close(self) -> None:
        if self.provider is not None:
            await self.provider.close()

    def health(self) -> dict[str, Any]:
        if self.provider is None:
            return {"provider": self.name, "state": "unconfigured"}
        return self.provider.health()


class EmbeddedSlot(ProviderSlot):
    name = "embedded"

    def __init__(self, config: AIConfig, log_dir: Path) -> None:
        super().__init__(config)
        self.server = EmbeddedModelServer(config, log_dir)
        self.installer: RuntimeInstaller | None = None
        self.log_dir = log_dir

    @property
    def context_tokens(self) -> int:
        return min(self.config.context_tokens, self.config.embedded_ctx)

    @property
    def max_output_tokens(self) -> int:
        return min(self.config.max_output_tokens, self.config.embedded_ctx // 4)

    async def start(self) -> None:
        if self.config.embedded_install and not await asyncio.to_thread(server_installed):
            self.installer = RuntimeInstaller(self.log_dir)
            self.installer.start(self.server.start)
        else:
            self.server.start()

    @property
    def installing(self) -> bool:
        return self.installer is not None and self.installer.state == "installing"

    def unavailable(self) -> tuple[str, str]:
        if self.installing:
            return INSTALLING
        if self.installer is not None and self.installer.error:
            return "ai_unavailable", f"the embedded AI model could not be installed: " \
                f"{self.installer.error}"
        return UNAVAILABLE

    async def get(self) -> Provider | None:
        if self.installing:
            return None
        if self.provider is None:
            if not await self.server.wait_ready(self.config.embedded_start_timeout_s):
                return None
            model = self.server.model_path.stem if self.server.model_path else "embedded"
            config = dataclasses.replace(self.config, max_retries=1)
            # llama.cpp's server answers tool requests only with special chat formats: the
            # embedded model gets the project context in its prompt, no tools.
            self.provider = OpenAICompatProvider(
                config, self.server.base_url, None, model, name="embedded", supports_tools=False
            )
        return self.provider if self.server.state == "ready" else None

    async def close(self) -> None:
        await super().close()
        if self.installer is not None:
            await self.installer.stop()
        await self.server.stop()

    def health(self) -> dict[str, Any]:
        installer = self.installer
        if installer is not None and installer.state != "installed":
            report: dict[str, Any] = {
                "provider": self.name, "state": installer.state, "log": str(installer.log_path)
            }
            if installer.error:
                report["error"] = installer.error
            return report
        report = {"provider": self.name, "state": self.server.state}
        if installer is not None:
            report["install_s"] = installer.install_s
        if self.server.model_path is not None:
            report["model"] = self.server.model_path.stem
        if self.server.error:
            report["error"] = self.server.error
        if self.server.startup_s is not None:
            report["startup_s"] = self.server.startup_s
        return report


def _openai(config: AIConfig, data_dir: Path) -> ProviderSlot:
    slot = ProviderSlot(config)
    slot.name = "openai"
    if config.base_url:
        slot.provider = OpenAICompatProvider(
            config, config.base_url, config.api_key, config.model or "gpt-4o-mini"
        )
    return slot


def _anthropic(config: AIConfig, data_dir: Path) -> ProviderSlot:
    slot = ProviderSlot(config)
    slot.name = "anthropic"
    if config.anthropic_api_key:
        slot.provider = AnthropicProvider(config)
    return slot


def _embedded(config: AIConfig, data_dir: Path) -> ProviderSlot:
    return EmbeddedSlot(config, data_dir / "logs")


def _none(config: AIConfig, data_dir: Path) -> ProviderSlot:
    return ProviderSlot(config)


PROVIDERS: dict[str, Callable[[AIConfig, Path], ProviderSlot]] = {
    "openai": _openai,
    "anthropic": _anthropic,
    "embedded": _embedded,
    "none": _none,
}


def provider_slot(config: AIConfig, data_dir: Path) -> ProviderSlot:
    try:
        factory = PROVIDERS[config.provider_name]
    except KeyError:
        raise ValueError(
            f"unknown AI provider {config.provider_name!r} (one of {', '.join(PROVIDERS)})"
        ) from None
    return factory(config, data_dir)
