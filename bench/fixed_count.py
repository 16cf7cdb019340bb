"""A fixed number of keep-alive GETs against a running server, for counting what a request costs under
``valgrind --tool=callgrind`` or ``strace -c -f`` (docs/performance.md): run the server under the tool, send N
requests, then 2N in a second run; (count at 2N - count at N) / N cancels start-up. wrk runs for a time, not a
count, so it cannot do this. Each response is read whole (its Content-Length) before the connection's next
request; a response without one, or a connection closed early, stops the run with an error.

    python -m bench.fixed_count PORT PATH N [--connections 16] [--host 127.0.0.1]
"""

from __future__ import annotations

import argparse
import selectors
import socket
import sys
import time


def run(host: str, port: int, path: str, n: int, connections: int) -> int:
    """Send ``n`` GETs over ``connections`` connections; returns how many answers were not 200."""
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    sel = selectors.DefaultSelector()
    state: dict[socket.socket, list] = {}
    sent = done = not_ok = 0

    def start(sock: socket.socket) -> None:
        nonlocal sent
        sent += 1
        sock.sendall(request)
        state[sock] = [bytearray(), -1]  # (bytes read, the whole response's length once its head is in)

    for _ in range(min(connections, n)):
        sock = socket.create_connection((host, port), timeout=30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sel.register(sock, selectors.EVENT_READ)
        start(sock)
    while done < n:
        ready = sel.select(30)
        if not ready:
            raise SystemExit(f"no answer for 30 s after {done} of {n} responses")
        for key, _ in ready:
            sock = key.fileobj
            buf, whole = state[sock]
            data = sock.recv(1 << 20)
            if not data:
                raise SystemExit(f"the server closed a connection after {done} of {n} responses")
            buf += data
            if whole < 0:
                end = buf.find(b"\r\n\r\n")
                if end < 0:
                    continue
                head = bytes(buf[:end]).lower()
                not_ok += not head.startswith(b"http/1.1 200")
                if b"\r\ncontent-length:" not in head:
                    raise SystemExit("a response without Content-Length: the run cannot tell where it ends")
                length = int(head.split(b"\r\ncontent-length:")[1].split(b"\r\n")[0])
                whole = state[sock][1] = end + 4 + length
            if len(buf) > whole:
                raise SystemExit("more bytes than the response's Content-Length")
            if len(buf) == whole:
                done += 1
                if sent < n:
                    start(sock)
                else:
                    sel.unregister(sock)
                    sock.close()
    return not_ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int)
    parser.add_argument("path")
    parser.add_argument("n", type=int)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--host", default="127.0.0.1", help="loopback only (127.0.0.1 or ::1)")
    args = parser.parse_args()
    started = time.perf_counter()
    not_ok = run(args.host, args.port, args.path, args.n, args.connections)
    print(f"{args.n} responses in {time.perf_counter() - started:.2f} s, {not_ok} not 200", file=sys.stderr)
    sys.exit(1 if not_ok else 0)


if __name__ == "__main__":
    main()
