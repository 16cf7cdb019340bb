"""Handlers that block in known places (tests/test_blocking_sites.py). Each blocking line is marked with a
comment 'BLOCKS: NAME', which the tests look up to know the line the report must name."""

import asyncio
import socket
import threading
import time
import urllib.request
from urllib.parse import parse_qs

from tests import blocking_lib

LOCK = threading.Lock()


def nap(seconds):
    time.sleep(seconds)  # BLOCKS: sleep


def read_reply(port):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        return sock.recv(16)  # BLOCKS: recv


def fetch_orders(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/orders", timeout=5) as resp:  # BLOCKS: urlopen
        return resp.read()


def wait_for_lock(hold):
    held = threading.Event()

    def holder():
        with LOCK:
            held.set()
            time.sleep(hold)

    threading.Thread(target=holder, daemon=True).start()
    held.wait()
    with LOCK:  # BLOCKS: lock
        pass


def phase_one(seconds):
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:  # BLOCKS: cpu1
        n += 1
    return n


def phase_two(seconds):
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:  # BLOCKS: cpu2
        n += 1
    return n


def crunch(first, second):
    return phase_one(first) + phase_two(second)


def distinct(path, seconds):
    time.sleep(seconds)  # BLOCKS: distinct


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
    t = float(query.get("t", "0.05"))
    path = scope["path"]
    if path == "/sleep":
        nap(t)
    elif path == "/recv":
        read_reply(int(query["port"]))
    elif path == "/orders":
        fetch_orders(int(query["port"]))
    elif path == "/lock":
        wait_for_lock(t)
    elif path == "/cpu":
        crunch(float(query.get("first", "0.1")), t)
    elif path == "/deep":
        blocking_lib.fetch(t)
    elif path.startswith("/many/"):
        distinct(path, t)
    elif path == "/await-sleep":  # blocks its loop after an await (a later step)
        await asyncio.sleep(0)
        nap(t)
    body = b"done"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
