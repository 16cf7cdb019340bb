"""A fixed-count HTTP/1.1 client over TLS (or plain TCP), for instruction counts and handshake cost.

wrk is time-based; an instruction count needs a known number of requests. This client sends exactly N GETs and
reads each answer (Content-Length framed) before the next on that connection:

- ``keepalive``: N requests spread over C keep-alive connections (one handshake each);
- ``close``: N connections, one handshake and one request (``Connection: close``) each: the server's CPU per
  new connection, handshake included.

usage: python -m bench.tlsclient PORT N [--connections C] [--mode keepalive|close] [--plain] [--timeout S]
                                [--duration S]
With --duration it stops after S seconds if N requests are not done by then. Prints one JSON object: requests,
connections, seconds. Loopback only; every socket operation is bounded.
"""

from __future__ import annotations

import argparse
import json
import socket
import ssl
import sys
import time

HOST = "127.0.0.1"


def client_context() -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # (the bench's throwaway self-signed certificate)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def _connect(port: int, ctx: ssl.SSLContext | None, timeout: float):
    sock = socket.create_connection((HOST, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return ctx.wrap_socket(sock) if ctx is not None else sock


def _exchange(sock, request: bytes) -> None:
    """Send one request and read its whole response (a status line, headers, Content-Length bytes)."""
    sock.sendall(request)
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the response head")
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise ConnectionError(f"unexpected response {head[:40]!r}")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed mid-body")
        body += chunk


def run(port: int, n: int, connections: int = 4, mode: str = "keepalive", plain: bool = False,
        timeout: float = 30.0, duration: float | None = None) -> dict:
    ctx = None if plain else client_context()
    t0 = time.monotonic()
    end = t0 + duration if duration is not None else float("inf")
    done = 0
    if mode == "close":  # a full handshake each time: no session is resumed
        request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        while done < n and time.monotonic() < end:
            sock = _connect(port, ctx, timeout)
            try:
                _exchange(sock, request)
            finally:
                sock.close()
            done += 1
        opened = done
    else:
        request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        socks = [_connect(port, ctx, timeout) for _ in range(min(connections, n))]
        try:
            while done < n and time.monotonic() < end:
                _exchange(socks[done % len(socks)], request)
                done += 1
        finally:
            for sock in socks:
                sock.close()
        opened = len(socks)
    return {"requests": done, "connections": opened, "seconds": round(time.monotonic() - t0, 3)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("port", type=int)
    p.add_argument("n", type=int)
    p.add_argument("--connections", type=int, default=4)
    p.add_argument("--mode", choices=("keepalive", "close"), default="keepalive")
    p.add_argument("--plain", action="store_true", help="plain TCP instead of TLS (the same load over HTTP)")
    p.add_argument("--timeout", type=float, default=30.0, help="bound on each socket operation, seconds")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    a = p.parse_args(argv)
    print(json.dumps(run(a.port, a.n, a.connections, a.mode, a.plain, a.timeout, a.duration)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
