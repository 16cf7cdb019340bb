"""A WebSocketSession's states, and the bounds its reader and its sends share."""

# CONNECTING: the app has ``websocket.connect`` and may accept, close (403) or start a denial response;
# RESPONDING: a denial response's body is being sent; OPEN; CLOSING: our close frame went out, the peer's answer is
# awaited for at most ``--ws-close-timeout``; CLOSED.
CONNECTING, RESPONDING, OPEN, CLOSING, CLOSED = range(5)

QUEUE_HIGH = 32         # received messages waiting for the app before reading pauses (backpressure)
WRITE_HIGH_WATER = 65536
