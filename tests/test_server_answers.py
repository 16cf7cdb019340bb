"""Responses the server makes itself, not the app: an error for a malformed or oversized request (400, 413, 431),
503 past --limit-concurrency, 500 for an app that failed before its response. Each is in the access log and in
--metrics-port's counters, as any response is (hybrid/server.py, Server.server_answered).

Real server processes over real sockets on 127.0.0.1 (tests/support.py); the metrics are scraped over HTTP.
"""

import json
import re
import socket
import threading
import time

import pytest

from .support import Server
from .test_lifecycle import _free_port, _metrics

pytestmark = pytest.mark.timeout(60)

OPS = "tests.apps.ops:app"

# (what the client sends on a connection of its own, the status it gets, the line's method and path)
ANSWERS = [
    (b"GET /plain HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", 400, "-", "-"),
    (b"GET /plain HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(200)) + b"\r\n", 431,
     "-", "-"),
    (b"POST /read-body HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n", 413, "-", "-"),  # refused at its head
    # a whole head, then a malformed chunked body: the request is known
    (b"POST /read-body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400, "POST", "/read-body"),
    (b"GET /fail HTTP/1.1\r\nHost: x\r\n\r\n", 500, "GET", "/fail"),
]


def _status_of(raw: bytes, addr) -> int:
    with socket.create_connection(addr, timeout=10) as s:
        s.sendall(raw)
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    m = re.match(rb"HTTP/1\.1 (\d{3}) ", data)
    assert m, data
    return int(m.group(1))


def _busy_answer(srv: Server) -> int:
    """--limit-concurrency 1: a request while another one runs gets the built-in 503."""
    holder = threading.Thread(target=lambda: _status_of(b"GET /block-long HTTP/1.1\r\nHost: x\r\n\r\n", srv.addr))
    holder.start()
    time.sleep(0.5)  # /block-long is running (1.5 s)
    try:
        return _status_of(b"GET /plain HTTP/1.1\r\nHost: x\r\n\r\n", srv.addr)
    finally:
        holder.join(10)


@pytest.mark.parametrize("fmt, mode", [("text", "hybrid"), ("json", "hybrid"), ("json", "async")])
def test_server_made_responses_are_in_the_access_log_and_the_metrics(fmt, mode):
    """(--mode async: one event loop, which a blocking handler would hold: no 503 there.)"""
    port = _free_port()
    busy = mode == "hybrid"
    where = "worker" if busy else "pool"
    with Server(OPS, "--port", "0", "--metrics-port", str(port), "--limit-request-body", "100", "--mode", mode,
                "--limit-concurrency", "1", "--access-log-format", fmt) as srv:
        for raw, status, _, _ in ANSWERS:
            assert _status_of(raw, srv.addr) == status, raw
        if busy:
            assert _busy_answer(srv) == 503
        time.sleep(0.3)  # (the lines are written within 50 ms; the metrics at once)
        m = _metrics(port)
    expected = [(method, path, status) for _, status, method, path in ANSWERS] + [("GET", "/plain", 503)] * busy
    if fmt == "json":
        records = [r for r in (json.loads(line) for line in srv.output.splitlines() if line.startswith("{"))
                   if "status" in r]  # (access records: the server's own lines are JSON too)
        got = [(r["method"], r["path"], r["status"]) for r in records if r["path"] != "/block-long"]
        assert got == expected, srv.output
        assert all(r["where"] == where and r["http_version"] == "1.1" and r["request_id"] for r in records)
        fail = next(r for r in records if r["path"] == "/fail")
        assert fail["bytes"] == len("Internal Server Error\n") and isinstance(fail["duration_ms"], float)
    else:
        lines = re.findall(r'^INFO:     127\.0\.0\.1:\d+ - "(\S+) (\S+) HTTP/1\.1" (\d+)$', srv.output, re.M)
        got = [(method, path, int(status)) for method, path, status in lines if path != "/block-long"]
        assert got == expected, srv.output
    assert m[f'hybrid_responses_total{{status="4xx",where="{where}"}}'] == 4, m
    assert m[f'hybrid_responses_total{{status="5xx",where="{where}"}}'] == 1 + busy, m  # /fail, the 503
    assert m.get(f'hybrid_responses_total{{status="2xx",where="{where}"}}', 0) == busy, m  # /block-long
    assert m[f'hybrid_request_duration_seconds_count{{where="{where}"}}'] == 5 + 2 * busy, m
    assert m["hybrid_requests_in_flight"] == 0, m
