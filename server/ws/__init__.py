"""WebSocket endpoints: authenticate, authorize, hand the socket to a hub."""
