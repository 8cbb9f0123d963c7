"""WebSocket close codes shared by every socket endpoint (DESIGN.md §3)."""

NORMAL = 1000
GOING_AWAY = 1001  # server shutting down: clients reconnect (elsewhere)
INTERNAL_ERROR = 1011
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
# A terminal's shell ran on a node that died (execution.terminal_relay.TERMINAL_GONE):
# reconnecting starts a new shell.
TERMINAL_GONE = 4410
# Access revoked while the socket was open (the membership path, server/membership.py).
ACCESS_REVOKED = FORBIDDEN
# A slow consumer may reconnect and resync: stock y-websocket clients treat every
# 4400-4499 close as final, so this is 1013 (try again later), not a 44xx code.
SLOW_CONSUMER = TRY_AGAIN_LATER
