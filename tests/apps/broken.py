"""Importing this module fails."""

raise ImportError("broken-app-marker-5d1e: cannot import this app")
