"""Workspace API keys (OpenAI, Anthropic, Firecrawl, Vercel, GitHub): checked, stored, used."""
