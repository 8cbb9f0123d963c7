"""The Starlette app, its endpoints and the command line."""

__version__ = "0.1.0"
