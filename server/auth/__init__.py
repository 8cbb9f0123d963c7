"""Authentication: access tokens, passwords, sessions."""
