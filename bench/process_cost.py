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
each kind. Time-based work (the monitor's ticks, the main thread's wake-ups) is counted too: it is per second,
not per request, so the slower the client the more of it lands on each request.

    .venv/bin/python -m bench.process_cost --server hybrid|uvicorn --app bench.apps.starlette_app:app
        [--path /] [--post] [--requests 2000] [--connections 64] (--callgrind | --strace) [-- extra server args]
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import time

from bench import env
from bench.servers import children_of
from bench.wrk import JSON_BODY

START_TIMEOUT = 600.0  # an app imported under valgrind on a loaded machine takes minutes
IO_TIMEOUT = 120.0  # no response for this long: the run fails (bounded)


def request_bytes(path: str, post: bool) -> bytes:
    if not post:
        return f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()
    body = JSON_BODY if isinstance(JSON_BODY, bytes) else JSON_BODY.encode()
    return (f"POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


def drive(port: int, request: bytes, n: int, connections: int) -> float:
    """Send exactly n requests over `connections` keep-alive connections, one in flight on each; every response
    must be a 200 with a Content-Length. Returns the seconds it took."""
    sel = selectors.DefaultSelector()
    socks: dict[socket.socket, bytes] = {}
    sent = done = 0
    t0 = time.monotonic()
    try:
        for _ in range(min(connections, n)):
            s = socket.create_connection(("127.0.0.1", port), timeout=IO_TIMEOUT)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(request)
            sent += 1
            socks[s] = b""
            sel.register(s, selectors.EVENT_READ)
        while done < n:
            events = sel.select(IO_TIMEOUT)
            if not events:
                raise RuntimeError(f"no response for {IO_TIMEOUT:.0f} s ({done} of {n} done)")
            for key, _ in events:
                s = key.fileobj
                data = s.recv(65536)
                if not data:
                    raise RuntimeError("the server closed a keep-alive connection")
                buf = socks[s] + data
                while (end := buf.find(b"\r\n\r\n")) >= 0:
                    head = buf[:end].lower()
                    if not head.startswith(b"http/1.1 200"):
                        raise RuntimeError(f"unexpected response {head[:60]!r}")
                    m = re.search(rb"\r\ncontent-length: *(\d+)", head)
                    if m is None:
                        raise RuntimeError("a response without Content-Length")
                    size = end + 4 + int(m.group(1))
                    if len(buf) < size:
                        break
                    buf = buf[size:]
                    done += 1
                    if sent < n:
                        s.sendall(request)
                        sent += 1
                socks[s] = buf
    finally:
        for s in socks:
            s.close()
        sel.close()
    return time.monotonic() - t0


def server_argv(server: str, app: str, port: int, extra: list[str]) -> list[str]:
    if server == "hybrid":
        return [env.hybrid_python(), "-m", "hybrid", app, "--host", "127.0.0.1", "--port", str(port),
                "--no-access-log", *extra]
    if server == "granian":  # (as bench/servers.py starts it; its worker is a child process)
        return [str(env.peers_bin("granian")), "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port),
                "--http", "1", "--loop", "uvloop", "--no-access-log", "--log-level", "warning", "--workers", "1",
                "--backpressure", "16384", *extra, app]
    return [str(env.peers_python()), "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
            "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning", *extra]


def wait_listening(proc: subprocess.Popen, port: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with code {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"the server did not listen within {START_TIMEOUT:.0f} s")


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def callgrind_totals(path: str) -> int:
    with open(path) as f:
        for line in f:
            if line.startswith(("totals:", "summary:")):
                return int(line.split()[1])
    raise RuntimeError(f"no totals in {path}")


def run_callgrind(args, argv: list[str], request: bytes, port: int, log) -> dict:
    out = tempfile.mkdtemp(prefix="process_cost.")
    cmd = ["valgrind", "--tool=callgrind", "--separate-threads=no", "--trace-children=yes",
           f"--callgrind-out-file={out}/cg.%p", *argv]
    proc = subprocess.Popen(cmd, cwd=env.REPO_ROOT, stdout=log, stderr=log,
                            env={**os.environ, "PYTHONHASHSEED": "0"})
    try:
        wait_listening(proc, port)
        drive(port, request, args.warmup, args.connections)
        pids = [proc.pid, *children_of(proc.pid)]  # (granian serves in a child process)
        for pid in pids:
            subprocess.run(["callgrind_control", "-z", str(pid)], check=True, capture_output=True)
        n = args.requests
        for count in (n, 2 * n):
            drive(port, request, count, args.connections)
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
        wait_listening(proc, port)
        drive(port, request, args.warmup, args.connections)
        pids = [proc.pid, *children_of(proc.pid)]  # (granian serves in a child process)
        tracer = subprocess.Popen(["strace", "-c", "-f", *(a for pid in pids for a in ("-p", str(pid))), "-o", out],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # (attached to every thread)
        seconds = drive(port, request, args.requests, args.connections)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", choices=("hybrid", "uvicorn", "granian"), default="hybrid")
    parser.add_argument("--app", default="bench.apps.starlette_app:app")
    parser.add_argument("--path", default="/")
    parser.add_argument("--post", action="store_true", help="POST the json scenario's 1 KB body")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=64)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--callgrind", action="store_true")
    mode.add_argument("--strace", action="store_true")
    parser.add_argument("extra", nargs="*", help="more server arguments (after --)")
    args = parser.parse_args()
    port = free_port()
    extra = list(args.extra)
    if args.callgrind and args.server == "hybrid" and "--blocking-threshold" not in extra:
        extra += ["--blocking-threshold", "30"]
    argv = server_argv(args.server, args.app, port, extra)
    request = request_bytes(args.path, args.post)
    with tempfile.NamedTemporaryFile("w+b", prefix="process_cost.log.", delete=False) as log:
        try:
            result = (run_callgrind if args.callgrind else run_strace)(args, argv, request, port, log)
        except Exception as exc:
            sys.exit(f"{args.server}: {exc} (server log: {log.name})")
    method = "POST" if args.post else "GET"
    print(f"{args.server} {args.app} {method} {args.path}, {args.requests} requests, {args.connections} connections:")
    for key, value in result.items():
        print(f"  {key}: {value}")


if __name__ == "__main__":
    main()
