"""ASGI protocol pieces: HTTP (scope, receive, send), lifespan, the request task, and WebSocket (websocket.py and
the ws_*.py files beside it)."""
