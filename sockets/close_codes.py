"""WebSocket close codes of every socket endpoint (DESIGN.md §3): the only place they are defined.

Documents, the project channel, chat and terminals close with these; the packages below
``server/`` (collab, ai, execution, gitsync) import them from here too, so no layer needs
to import the web layer for a number.
"""

NORMAL = 1000
GOING_AWAY = 1001  # server shutting down: clients reconnect (elsewhere)
INVALID_DATA = 1007  # a text frame that is not UTF-8
INTERNAL_ERROR = 1011
SERVICE_RESTART = 1012  # the document hub stops: clients reconnect and resync
TRY_AGAIN_LATER = 1013
UNAUTHENTICATED = 4401
FORBIDDEN = 4403
NOT_FOUND = 4404
BAD_MESSAGE = 4400
TOO_LARGE = 4413
# The file is a stored object (binary or large), not a text document: never a CRDT.
NOT_A_DOCUMENT = 4415
UNAVAILABLE = 4503  # a part this socket needs is missing here (e.g. the sandbox): see reason
OVER_BUDGET = 4429
# A slow consumer may reconnect and resync: stock y-websocket clients treat every
# 4400-4499 close as final, so this is 1013 (try again later), not a 44xx code.
SLOW_CONSUMER = TRY_AGAIN_LATER
# A terminal's shell ran on a node that died (execution/terminal_relay.py): reconnecting
# starts a new shell.
TERMINAL_GONE = 4410
# Access revoked while the socket was open (the membership path, server/membership.py).
ACCESS_REVOKED = FORBIDDEN
