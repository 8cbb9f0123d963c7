"""Which LLM provider to use and how to reach it.

The provider is chosen by name (``AI_PROVIDER``: ``openai``, ``anthropic``, ``embedded``,
``none``); unset, it is derived: ``AI_BASE_URL`` -> openai, ``ANTHROPIC_API_KEY`` ->
anthropic, else the embedded model when enabled. ``AIConfig()`` built directly (tests)
has the embedded model off; ``from_env`` has it on unless ``AI_EMBEDDED=0``, and installs
its runtime in the background when missing unless ``AI_EMBEDDED_INSTALL=0``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ai.tool_loop import ToolBudget


def _flag(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() not in {"0", "false", "no", "off"}


@dataclass(frozen=True)
class AIConfig:
    provider: str | None = None
    base_url: str | None = None
    api_key: str | None = None
    model: str | None = None
    anthropic_api_key: str | None = None
    anthropic_base_url: str = "https://api.anthropic.com"
    anthropic_model: str = "claude-3-5-haiku-latest"
    anthropic_version: str = "2023-06-01"
    embedded: bool = False
    # Install the ai extra in the background when the embedded model's runtime is missing.
    embedded_install: bool = False
    models_dir: Path = Path(".data/models")
    embedded_model_path: Path | None = None
    embedded_ctx: int = 2048
    embedded_threads: int | None = None
    embedded_start_timeout_s: float = 120.0
    # Prompt budget: the model's context window, of which max_output_tokens is kept free.
    context_tokens: int = 8192
    max_output_tokens: int = 1024
    history_messages: int = 50
    max_context_chars: int = 24_000
    system_prompt: str | None = None
    # Retries happen only before the first token reaches anyone.
    max_retries: int = 3
    retry_base_s: float = 0.5
    retry_max_wait_s: float = 20.0
    connect_timeout_s: float = 10.0
    first_token_timeout_s: float = 120.0
    idle_timeout_s: float = 60.0
    max_message_chars: int = 32_000
    watcher_queue_max: int = 4096
    stale_job_s: float = 900.0
    # Tool calling (providers that support it): rounds of calls and tokens per reply.
    tool_steps: int = 4
    tool_tokens: int = 24_000
    # Project context beside the prompt: the file tree and the user's last run.
    project_context: bool = True

    @property
    def tool_budget(self) -> ToolBudget:
        return ToolBudget(max_steps=self.tool_steps, max_tokens=self.tool_tokens)

    @property
    def provider_name(self) -> str:
        if self.provider:
            return self.provider
        if self.base_url:
            return "openai"
        if self.anthropic_api_key:
            return "anthropic"
        if self.embedded:
            return "embedded"
        return "none"

    @classmethod
    def from_env(cls, env: Mapping[str, str], data_dir: Path) -> AIConfig:
        d = cls()
        threads = env.get("AI_EMBEDDED_THREADS")
        model_path = env.get("AI_EMBEDDED_MODEL")
        return cls(
            provider=env.get("AI_PROVIDER") or None,
            base_url=env.get("AI_BASE_URL") or None,
            api_key=env.get("AI_API_KEY") or None,
            model=env.get("AI_MODEL") or None,
            anthropic_api_key=env.get("ANTHROPIC_API_KEY") or None,
            anthropic_base_url=env.get("ANTHROPIC_BASE_URL") or d.anthropic_base_url,
            anthropic_model=env.get("ANTHROPIC_MODEL") or d.anthropic_model,
            embedded=_flag(env.get("AI_EMBEDDED"), True),
            embedded_install=_flag(env.get("AI_EMBEDDED_INSTALL"), True),
            models_dir=data_dir / "models",
            embedded_model_path=Path(model_path) if model_path else None,
            embedded_ctx=int(env.get("AI_EMBEDDED_CTX", d.embedded_ctx)),
            embedded_threads=int(threads) if threads else None,
            embedded_start_timeout_s=float(
                env.get("AI_EMBEDDED_START_TIMEOUT_S", d.embedded_start_timeout_s)
            ),
            context_tokens=int(env.get("AI_CONTEXT_TOKENS", d.context_tokens)),
            max_output_tokens=int(env.get("AI_MAX_OUTPUT_TOKENS", d.max_output_tokens)),
            system_prompt=env.get("AI_SYSTEM_PROMPT") or None,
            max_retries=int(env.get("AI_MAX_RETRIES", d.max_retries)),
            retry_max_wait_s=float(env.get("AI_RETRY_MAX_WAIT_S", d.retry_max_wait_s)),
            tool_steps=int(env.get("AI_TOOL_STEPS", d.tool_steps)),
            tool_tokens=int(env.get("AI_TOOL_TOKENS", d.tool_tokens)),
        )
