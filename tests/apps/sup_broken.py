"""Importing this module fails (supervisor tests: a worker that cannot start)."""

raise RuntimeError("sup-broken-import-marker-3b9e: this app cannot be imported")
