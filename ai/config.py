"""Which LLM provider to use and how to reach it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class AIConfig:
    base_url: str | None = None
    api_key: str | None = None
    model: str | None = None
    anthropic_api_key: str | None = None
    anthropic_base_url: str = "https://api.anthropic.com"
    embedded: bool = True
    models_dir: Path = Path(".data/models")

    @classmethod
    def from_env(cls, env: Mapping[str, str], data_dir: Path) -> AIConfig:
        return cls(
            base_url=env.get("AI_BASE_URL") or None,
            api_key=env.get("AI_API_KEY") or None,
            model=env.get("AI_MODEL") or None,
            anthropic_api_key=env.get("ANTHROPIC_API_KEY") or None,
            anthropic_base_url=env.get("ANTHROPIC_BASE_URL", "https://api.anthropic.com"),
            embedded=env.get("AI_EMBEDDED", "1").lower() not in {"0", "false", "no", "off"},
            models_dir=data_dir / "models",
        )
