"""What a request costs a REAL server process, all its threads included (docs/performance.md).

``bench.request_path`` drives one connection in process; this starts the server itself (hybrid from the repo's
.venv, uvicorn with httptools and uvloop from bench/.venv-peers) and sends it an exact number of requests over
keep-alive connections, one in flight on each (as wrk does), so what is counted is what the process does under
load: the serving thread, the monitor, the main thread, the loops, the kernel's share of the system calls.

``--callgrind``: the process runs under ``valgrind --tool=callgrind --separate-threads=no``; after a warm-up the
counters are zeroed, N requests are sent and the counters dumped, then 2N and dumped again:
(I(2N) - I(N)) / N is instructions per request with whatever is paid once per segment cancelled. A second
count does not depend on the machine's load (wall-clock req/s do). Under valgrind a step takes ~50x longer, so
hybrid runs with ``--blocking-threshold 30`` here (or the monitor would take over its "blocked" thread).
``--strace``: the process runs natively; ``strace -c -f`` is attached for N requests; system calls per request,
each kind. strace stops the thread at every system call, so hybrid runs with ``--blocking-threshold 30`` here too
(at 1 ms the monitor took traced steps for blocked ones: takeovers' thread starts and wake-ups in the counts).
Time-based work (the monitor's ticks, the main thread's wake-ups) is counted too: it is per second,
not per request, so the slower the client the more of it lands on each request.

``--cpu``: natively, user + system CPU of the process tree over N requests (clock ticks: take N >= 10,000);
``--pin``: the server on CPU 0 and this client on CPU 1, as the bench pins them (2 cores or more).
``--tls``: HTTPS with a throwaway self-signed certificate; ``--new-connections``: one connection per request
(``Connection: close``), one at a time, so the numbers are per connection (handshake, request, close).
``--server granian`` runs the peers' granian (``BENCH_PEERS_VENV`` names the peers' venv when this checkout
has none).

    .venv/bin/python -m bench.process_cost --server hybrid|uvicorn|granian --app bench.apps.starlette_app:app
        [--path /] [--post] [--requests 2000] [--connections 64] [--tls] [--new-connections]
        (--callgrind | --strace | --cpu [--pin]) [-- extra server args]
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import selectors
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import env
from bench.procs import free_port, stop, wait_listening
from bench.scenarios.tls import CERT_FLAGS, make_certificate
from bench.servers import children_of, cpu_times
from bench.tlsclient import client_context
from bench.wrk import JSON_BODY

START_TIMEOUT = 600.0  # an app imported under valgrind on a loaded machine takes minutes
IO_TIMEOUT = 120.0  # no response for this long: the run fails (bounded)


def request_bytes(path: str, post: bool) -> bytes:
    if not post:
        return f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
    body = JSON_BODY if isinstance(JSON_BODY, bytes) else JSON_BODY.encode()
    return (f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def connect(port: int, count: int, tls: ssl.SSLContext | None = None) -> list[socket.socket]:
    """``count`` keep-alive connections (over TLS with ``tls``: each handshaken here)."""
    socks = []
    try:
        for _ in range(count):
            s = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            socks.append(tls.wrap_socket(s) if tls is not None else s)
    except BaseException:
        for s in socks:
            s.close()
        raise
    return socks


def drive(port: int, request: bytes, n: int, connections: int, tls: ssl.SSLContext | None = None,
          socks: list[socket.socket] | None = None) -> float:
    """Send exactly n requests over `connections` keep-alive connections (or over ``socks``, opened before), one
    in flight on each; every response must be a 200 with a Content-Length. Over TLS with ``tls``. Returns the
    seconds it took; the connections are closed after."""
    if socks is None:
        socks = connect(port, min(connections, n), tls)
    sel = selectors.DefaultSelector()
    bufs: dict[socket.socket, bytes] = {}
    sent = done = 0
    t0 = time.monotonic()
    try:
        for s in socks[:n]:
            s.sendall(request)
            sent += 1
            bufs[s] = b""
            sel.register(s, selectors.EVENT_READ)
        while done < n:
            events = sel.select(IO_TIMEOUT)
            if not events:
                raise RuntimeError(f"no response for {IO_TIMEOUT:.0f} s ({done} of {n} done)")
            for key, _ in events:
                s = key.fileobj
                try:
                    data = s.recv(65536)
                except ssl.SSLWantReadError:  # (part of a record)
                    continue
                while tls is not None and data and s.pending():  # (decrypted already: select will not say so)
                    data += s.recv(65536)
                if not data:
                    raise RuntimeError("the server closed a keep-alive connection")
                buf = bufs[s] + data
                while (end := buf.find(b"\r\n\r\n")) >= 0:
                    head = buf[:end].lower()
                    if not head.startswith(b"http/1.1 200"):
                        raise RuntimeError(f"unexpected response {head[:60]!r}")
                    m = re.search(rb"\r\ncontent-length: *(\d+)", head)
                    if m is not None:
                        size = end + 4 + int(m.group(1))
                    elif b"\r\ntransfer-encoding: chunked" in head:  # (uvicorn frames Django's answers so)
                        last = buf.find(b"\r\n0\r\n\r\n", end)  # (no trailers asked for: the body ends there)
                        size = last + 7 if last >= 0 else len(buf) + 1
                    else:
                        raise RuntimeError("a response without Content-Length or chunked framing")
                    if len(buf) < size:
                        break
                    buf = buf[size:]
                    done += 1
                    if sent < n:
                        s.sendall(request)
                        sent += 1
                bufs[s] = buf
    finally:
        for s in socks:
            s.close()
        sel.close()
    return time.monotonic() - t0


def drive_new_connections(port: int, request: bytes, n: int, tls: ssl.SSLContext | None) -> float:
    """n connections one after another: connect (and handshake), one request with ``Connection: close``, read
    the response to the server's close. Returns the seconds it took."""
    request = request.replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
    t0 = time.monotonic()
    for _ in range(n):
        with connect(port, 1, tls)[0] as s:
            s.sendall(request)
            response = b""
            while chunk := s.recv(65536):
                response += chunk
            if not response.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"unexpected response {response[:60]!r}")
    return time.monotonic() - t0


def server_argv(server: str, app: str, port: int, extra: list[str], cert: tuple[str, str] | None = None) -> list[str]:
    if cert is not None:  # each server's names for its certificate options (bench/scenarios/tls.py)
        extra = [*CERT_FLAGS[server].format(cert=cert[0], key=cert[1]).split(), *extra]
    if server == "hybrid":
        return [env.hybrid_python(), "-m", "hybrid", app, "--host", "127.0.0.1", "--port", str(port),
                "--no-access-log", *extra]
    if server == "granian":  # (as bench/servers.py starts it; its worker is a child process)
        return [str(env.peers_bin("granian")), "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port),
                "--http", "1", "--loop", "uvloop", "--no-access-log", "--log-level", "warning", "--workers", "1",
                "--backpressure", "16384", *extra, app]
    return [str(env.peers_python()), "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
            "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning", *extra]


def callgrind_totals(path: str) -> int:
    with open(path) as f:
        for line in f:
            if line.startswith(("totals:", "summary:")):
                return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


def prepare(args, port: int, request: bytes, n: int):
    """The load of one measured segment, as a call; keep-alive connections (and their handshakes) are opened
    now, outside it."""
    if args.new_connections:
        return lambda: drive_new_connections(port, request, n, args.tls)
    socks = connect(port, min(args.connections, n), args.tls)
    return lambda: drive(port, request, n, args.connections, args.tls, socks)


def run_callgrind(args, argv: list[str], request: bytes, port: int, log) -> dict:
    out = tempfile.mkdtemp(prefix="process_cost.")
    cmd = ["valgrind", "--tool=callgrind", "--separate-threads=no", "--trace-children=yes",
           f"--callgrind-out-file={out}/cg.%p", *argv]
    proc = subprocess.Popen(cmd, cwd=env.REPO_ROOT, stdout=log, stderr=log,
                            env={**os.environ, "PYTHONHASHSEED": "0"})
    try:
        wait_listening(proc, port, START_TIMEOUT)
        prepare(args, port, request, args.warmup)()
        pids = [proc.pid, *children_of(proc.pid)]  # (granian serves in a child process)
        for pid in pids:
            subprocess.run(["callgrind_control", "-z", str(pid)], check=True, capture_output=True)
        n = args.requests
        for count in (n, 2 * n):  # (each opens its connections: the same handshakes in both, cancelled)
            prepare(args, port, request, count)()
            for pid in pids:
                subprocess.run(["callgrind_control", "-d", str(pid)], check=True, capture_output=True)
    finally:
        stop(proc)
    one = two = 0
    for pid in pids:
        first, second = sorted(glob.glob(f"{out}/cg.{pid}.*"))[:2]
        one += callgrind_totals(first)
        two += callgrind_totals(second)
    return {"instructions_per_request": round((two - one) / n), "dumps": out, "at_n": one, "at_2n": two}


def run_strace(args, argv: list[str], request: bytes, port: int, log) -> dict:
    proc = subprocess.Popen(argv, cwd=env.REPO_ROOT, stdout=log, stderr=log)
    out = tempfile.mktemp(prefix="process_cost.strace.")
    try:
        wait_listening(proc, port, START_TIMEOUT)
        prepare(args, port, request, args.warmup)()
        load = prepare(args, port, request, args.requests)  # (keep-alive: handshakes before strace attaches)
        pids = [f"-p{pid}" for pid in (proc.pid, *children_of(proc.pid))]  # (granian serves from a child process)
        tracer = subprocess.Popen(["strace", "-c", "-f", *pids, "-o", out],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # (attached to every thread)
        seconds = load()
        tracer.send_signal(signal.SIGINT)
        tracer.wait(30)
    finally:
        stop(proc)
    calls = {}
    with open(out) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
                calls[parts[-1]] = int(parts[3])
    n = args.requests
    return {"syscalls_per_request": round(sum(calls.values()) / n, 3),
            "each": {k: round(v / n, 3) for k, v in sorted(calls.items(), key=lambda kv: -kv[1])},
            "seconds": round(seconds, 2)}


def run_cpu(args, argv: list[str], request: bytes, port: int, log) -> dict:
    proc = subprocess.Popen(argv, cwd=env.REPO_ROOT, stdout=log, stderr=log)
    try:
        wait_listening(proc, port, START_TIMEOUT)
        prepare(args, port, request, args.warmup)()
        load = prepare(args, port, request, args.requests)
        user0, sys0 = cpu_times(proc.pid)
        seconds = load()
        user1, sys1 = cpu_times(proc.pid)
    finally:
        stop(proc)
    n = args.requests
    return {"cpu_us_per_request": round((user1 - user0 + sys1 - sys0) / n * 1e6, 1),
            "user_us": round((user1 - user0) / n * 1e6, 1), "sys_us": round((sys1 - sys0) / n * 1e6, 1),
            "seconds": round(seconds, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", choices=("hybrid", "uvicorn", "granian"), default="hybrid")
    parser.add_argument("--app", default="bench.apps.starlette_app:app")
    parser.add_argument("--path", default="/")
    parser.add_argument("--post", action="store_true", help="POST the json scenario's 1 KB body")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--tls", action="store_true", help="HTTPS, with a throwaway self-signed certificate")
    parser.add_argument("--new-connections", action="store_true",
                        help="one connection per request (Connection: close), one at a time: per-connection cost")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--callgrind", action="store_true")
    mode.add_argument("--strace", action="store_true")
    mode.add_argument("--cpu", action="store_true", help="CPU time of the process tree (clock ticks: N >= 10,000)")
    parser.add_argument("--pin", action="store_true", help="the server on CPU 0, this client on CPU 1")
    parser.add_argument("extra", nargs="*", help="more server arguments (after --)")
    args = parser.parse_args()
    if args.pin:
        os.sched_setaffinity(0, {1})
    port = free_port()
    extra = list(args.extra)
    if (args.callgrind or args.strace) and args.server == "hybrid" and "--blocking-threshold" not in extra:
        extra += ["--blocking-threshold", "30"]
    cert = make_certificate(Path(tempfile.mkdtemp(prefix="process_cost.cert."))) if args.tls else None
    args.tls = client_context() if args.tls else None
    argv = server_argv(args.server, args.app, port, extra, cert)
    if args.pin:
        argv = ["taskset", "-c", "0", *argv]
    request = request_bytes(args.path, args.post)
    with tempfile.NamedTemporaryFile("w+b", prefix="process_cost.log.", delete=False) as log:
        try:
            run = run_callgrind if args.callgrind else run_strace if args.strace else run_cpu
            result = run(args, argv, request, port, log)
        except Exception as exc:
            sys.exit(f"{args.server}: {exc} (server log: {log.name})")
    method = "POST" if args.post else "GET"
    how = "one new connection each" if args.new_connections else f"{args.connections} connections"
    scheme = "HTTPS" if args.tls else "HTTP"
    print(f"{args.server} {args.app} {scheme} {method} {args.path}, {args.requests} requests, {how}:")
    for key, value in result.items():
        print(f"  {key}: {value}")


if __name__ == "__main__":
    main()
