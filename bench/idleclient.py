"""Idle keep-alive connections: open N, make one request on each, then leave them idle and measure.

Reports the server's RSS (its whole process tree, from /proc) before and after, the RSS per connection, the latency
of new requests (a new connection each, opened while the N are idle), and how many of the N were still open at the
end (a server that closes idle connections early would look cheaper than it is).

Run as ``python -m bench.idleclient --port P --pid PID --connections N``; prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import socket
import statistics
import sys
import time

from bench.servers import rss_kb

REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"


def read_response(s: socket.socket) -> bytes:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise ConnectionError("closed before a response")
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = s.recv(4096)
        if not chunk:
            break
        rest += chunk
    return head


def one_request(port: int, timeout: float) -> float:
    t = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        read_response(s)
    return time.perf_counter() - t


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--connections", type=int, default=5000)
    p.add_argument("--samples", type=int, default=50)
    p.add_argument("--settle", type=float, default=1.0)
    p.add_argument("--time-limit", type=float, default=90.0)
    a = p.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = a.connections + 200
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(need, soft)), hard))
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 100
    n = min(a.connections, limit)
    deadline = time.monotonic() + a.time_limit

    for _ in range(20):  # warm the server so that the baseline includes one served request
        one_request(a.port, 5.0)
    time.sleep(a.settle)
    before = rss_kb(a.pid)
    socks: list[socket.socket] = []
    failures = 0
    t_open = time.perf_counter()
    for _ in range(n):
        if time.monotonic() > deadline:
            break
        try:
            s = socket.create_connection(("127.0.0.1", a.port), timeout=10.0)
            s.sendall(REQUEST)
            read_response(s)
            socks.append(s)
        except OSError:
            failures += 1
    open_s = time.perf_counter() - t_open
    time.sleep(a.settle)
    after = rss_kb(a.pid)
    lat = []
    for _ in range(a.samples):
        if time.monotonic() > deadline:
            break
        try:
            lat.append(one_request(a.port, 5.0))
        except OSError:
            failures += 1
        time.sleep(0.01)
    still_open = 0
    for s in socks:
        s.setblocking(False)
        try:
            still_open += s.recv(1, socket.MSG_PEEK) != b""
        except BlockingIOError:
            still_open += 1
        except OSError:
            pass
    for s in socks:
        s.close()
    lat.sort()
    result = {
        "connections": len(socks),
        "still_open": still_open,
        "failures": failures,
        "open_seconds": round(open_s, 2),
        "rss_before_kb": before,
        "rss_after_kb": after,
        "kb_per_conn": round((after - before) / max(1, len(socks)), 2),
        "new_req_p50_ms": round(statistics.median(lat) * 1000, 3) if lat else None,
        "new_req_max_ms": round(lat[-1] * 1000, 3) if lat else None,
    }
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
