"""ASGI protocol pieces: HTTP (scope, receive, send), lifespan, and the request task."""
