"""Moved to ``sockets.close_codes`` (the one definition); this name stays importable for
branches written against it and re-exports, defining nothing."""

from sockets.close_codes import *  # noqa: F403
