"""collab package."""
