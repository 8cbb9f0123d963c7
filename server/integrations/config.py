"""Where the integrated services live (overridable so tests point at local servers)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class IntegrationsConfig:
    openai_url: str = "https://api.openai.com"
    anthropic_url: str = "https://api.anthropic.com"
    anthropic_version: str = "2023-06-01"
    firecrawl_url: str = "https://api.firecrawl.dev"
    vercel_url: str = "https://api.vercel.com"
    github_api_url: str = "https://api.github.com"
    timeout_s: float = 15.0
    # Firecrawl renders the page: give it longer than a key check.
    scrape_timeout_s: float = 45.0

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> IntegrationsConfig:
        d = cls()

        def url(name: str, default: str) -> str:
            return (env.get(name) or default).rstrip("/")

        return cls(
            openai_url=url("OPENAI_BASE_URL", d.openai_url),
            anthropic_url=url("ANTHROPIC_BASE_URL", d.anthropic_url),
            firecrawl_url=url("FIRECRAWL_BASE_URL", d.firecrawl_url),
            vercel_url=url("VERCEL_API_URL", d.vercel_url),
            github_api_url=url("GITHUB_API_URL", d.github_api_url),
        )
