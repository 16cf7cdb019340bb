"""Raw ASGI apps served by every server in the suite (no framework, no server-specific code)."""
