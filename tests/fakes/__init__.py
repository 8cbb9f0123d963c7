"""Small aiohttp servers speaking external services' wire formats (and failure modes)."""
