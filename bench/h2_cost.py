"""What an HTTP/2 request costs a REAL server process, in instructions (issue 26, docs/performance.md "HTTP/2").

The server runs under callgrind (``--separate-threads=no``: every thread counted); after a warm-up with h2load
the counters are zeroed, then ``h2load -n N`` runs twice, each followed by a dump: each dump over N is
instructions per request (h2load's connections, opened in each run, are in it as well). Two numbers per shape,
which agree within a few percent when nothing else moved.

    .venv/bin/python -m bench.h2_cost [--shape 8x8|1x100 ...] [--requests 2000] [--app ...] [--data FILE]
        [--tls] [-- server args]

``--json``: a JSON POST instead of a GET, as the json scenario's (bench.apps.json_echo:app, its 1 KB body:
h2load -d, each request's body in a DATA frame after its HEADERS). ``--data FILE`` posts any file. ``--tls``: over
HTTPS with ALPN h2 (the bench's throwaway certificate; h2load's TLS handshakes are in the counts, one per
connection per run), instead of h2c.

``--switches``: the server runs natively; context switches of its threads (``/proc/PID/task/*/status``: voluntary
ones are a thread going to sleep, each then costs a wake-up) over ``h2load -n N``, per request. ``--strace``: the
same load under ``strace -c -f``, system calls per request. (Both after the warm-up; h2load's connections included.)
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import env
from bench.h2load import H2Load
from bench.process_cost import START_TIMEOUT, callgrind_totals, server_argv, stop, wait_listening
from bench.scenarios.tls import make_certificate

SHAPES = {"8x8": (8, 8), "1x100": (1, 100)}  # connections, streams in flight on each (bench/scenarios/h2.py)
H2LOAD_TIMEOUT = 900.0  # a run of 2,000 requests under valgrind takes a minute or two on a loaded machine


def h2load(port: int, n: int, shape: str, data: str | None = None, tls: bool = False) -> None:
    connections, streams = SHAPES[shape]
    m = H2Load(port, connections, streams, 0, tls=tls, data=data, requests=n).run(timeout=H2LOAD_TIMEOUT)
    if (m["ok"], m["errors"]) != (n, 0):  # (and run() raised unless h2 or h2c was spoken)
        raise RuntimeError(f"h2load answered {m['ok']} of {n} requests with a 2xx, {m['errors']} errors")


def measure(shape: str, n: int, warmup: int, app: str, extra: list[str], data: str | None = None,
            cert: tuple[str, str] | None = None) -> list[int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = tempfile.mkdtemp(prefix="h2_cost.")
    # (--blocking-threshold 30: under valgrind a step takes ~50x longer; the monitor must not take it over)
    argv = ["valgrind", "--tool=callgrind", "--separate-threads=no", f"--callgrind-out-file={out}/cg.%p",
            *server_argv("hybrid", app, port, ["--blocking-threshold", "30", *extra], cert)]
    log = open(os.path.join(out, "server.log"), "w")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(argv, cwd=env.REPO_ROOT, stdout=log, stderr=log,
                            env={**os.environ, "PYTHONHASHSEED": "0"})
    try:
        wait_listening(proc, port, START_TIMEOUT)
        h2load(port, warmup, shape, data, cert is not None)
        subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True, capture_output=True)
        for _ in range(2):  # (each dump counts from the one before)
            h2load(port, n, shape, data, cert is not None)
            subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True)
    finally:
        stop(proc)
        log.close()
    print(f"(callgrind dumps in {out})", file=sys.stderr, flush=True)
    dumps = sorted(glob.glob(f"{out}/cg.{proc.pid}.*"), key=lambda p: int(p.rsplit(".", 1)[1]))[:2]
    return [round(callgrind_totals(path) / n) for path in dumps]


def _switches(pid: int) -> dict[str, tuple[int, int]]:
    """Each thread's (voluntary, involuntary) context switches, by thread name."""
    out: dict[str, tuple[int, int]] = {}
    for status in glob.glob(f"/proc/{pid}/task/*/status"):
        try:
            with open(status) as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
        except OSError:  # (a thread that ended)
            continue
        key = f"{fields['Name'].strip()}/{status.split('/')[4]}"
        out[key] = (int(fields["voluntary_ctxt_switches"]), int(fields["nonvoluntary_ctxt_switches"]))
    return out


def native(shape: str, n: int, warmup: int, app: str, extra: list[str], data: str | None, mode: str,
           cert: tuple[str, str] | None = None) -> dict:
    """The server without valgrind: context switches (``switches``) or system calls (``strace``) per request."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen(server_argv("hybrid", app, port, extra, cert), cwd=env.REPO_ROOT, stdout=log, stderr=log)
    trace = tempfile.mktemp(prefix="h2_cost.strace.")
    try:
        wait_listening(proc, port, START_TIMEOUT)
        h2load(port, warmup, shape, data, cert is not None)
        if mode == "switches":
            before = _switches(proc.pid)
            h2load(port, n, shape, data, cert is not None)
            after = _switches(proc.pid)
            each = {name: [after[name][i] - before.get(name, (0, 0))[i] for i in (0, 1)] for name in after}
            voluntary = sum(v for v, _ in each.values())
            return {"voluntary_per_request": round(voluntary / n, 3),
                    "involuntary_per_request": round(sum(i for _, i in each.values()) / n, 3),
                    "threads": {k: v for k, v in each.items() if v[0] or v[1]}}
        tracer = subprocess.Popen(["strace", "-c", "-f", f"-p{proc.pid}", "-o", trace],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1.0)  # (attached to every thread)
        h2load(port, n, shape, data, cert is not None)
        tracer.send_signal(signal.SIGINT)
        tracer.wait(30)
    finally:
        stop(proc)
        log.close()
    calls = {}
    with open(trace) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
                calls[parts[-1]] = int(parts[3])
    os.unlink(trace)
    return {"syscalls_per_request": round(sum(calls.values()) / n, 3),
            "each": {k: round(v / n, 3) for k, v in sorted(calls.items(), key=lambda kv: -kv[1])}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", action="append", choices=sorted(SHAPES))
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--app", default="bench.apps.plaintext:app")
    parser.add_argument("--data", help="POST this file's bytes as each request's body (h2load -d), e.g. with "
                        "--app bench.apps.json_echo:app")
    parser.add_argument("--json", action="store_true",
                        help="POST the json scenario's 1 KB body to bench.apps.json_echo:app")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--switches", action="store_true", help="context switches per request, natively")
    mode.add_argument("--strace", action="store_true", help="system calls per request (strace -c -f), natively")
    parser.add_argument("--tls", action="store_true", help="HTTPS with ALPN h2 instead of h2c: the bench's "
                        "self-signed P-256 certificate (bench/scenarios/tls.py)")
    parser.add_argument("extra", nargs="*", help="server options (after --)")
    args = parser.parse_args()
    cert = make_certificate(Path(tempfile.mkdtemp(prefix="h2_cost.tls."))) if args.tls else None
    if args.json:
        from bench.wrk import JSON_BODY

        args.app = "bench.apps.json_echo:app"
        with tempfile.NamedTemporaryFile("wb", prefix="h2_cost.", suffix=".json", delete=False) as f:
            f.write(JSON_BODY if isinstance(JSON_BODY, bytes) else JSON_BODY.encode())
        args.data = f.name
    for shape in args.shape or ["8x8", "1x100"]:
        if args.switches or args.strace:
            result = native(shape, args.requests, args.warmup, args.app, args.extra, args.data,
                            "switches" if args.switches else "strace", cert)
            print(json.dumps({"shape": shape, "tls": args.tls, **result}), flush=True)
            continue
        per_request = measure(shape, args.requests, args.warmup, args.app, args.extra, args.data, cert)
        print(json.dumps({"shape": shape, "tls": args.tls, "instructions_per_request": per_request}), flush=True)


if __name__ == "__main__":
    main()
