"""A stand-in for a library whose blocking call is a few frames deep (tests/apps/blocking.py calls it)."""

import time


def fetch(seconds: float) -> bytes:
    return _request(seconds)


def _request(seconds: float) -> bytes:
    _wait_for_reply(seconds)
    return b"reply"


def _wait_for_reply(seconds: float) -> None:
    time.sleep(seconds)  # BLOCKS: lib
