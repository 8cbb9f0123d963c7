"""LLM providers: async streams of text deltas followed by one usage event."""
