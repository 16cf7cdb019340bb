"""What an HTTP/2 request costs a REAL server process, in instructions (issue 26, docs/performance.md "HTTP/2").

The server runs under callgrind (``--separate-threads=no``: every thread counted); after a warm-up with h2load
the counters are zeroed, then ``h2load -n N`` runs twice, each followed by a dump: each dump over N is
instructions per request (h2load's connections, opened in each run, are in it as well). Two numbers per shape,
which agree within a few percent when nothing else moved.

    .venv/bin/python -m bench.h2_cost [--shape 8x8|1x100 ...] [--requests 2000] [--app ...] [-- server args]
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import socket
import subprocess
import tempfile

from bench import env
from bench.process_cost import START_TIMEOUT, callgrind_totals, server_argv, stop, wait_listening

SHAPES = {"8x8": (8, 8), "1x100": (1, 100)}  # connections, streams in flight on each (bench/scenarios/h2.py)
H2LOAD_TIMEOUT = 900.0  # a run of 2,000 requests under valgrind takes a minute or two on a loaded machine


def h2load(port: int, n: int, shape: str) -> None:
    connections, streams = SHAPES[shape]
    argv = ["h2load", "-n", str(n), "-c", str(connections), "-m", str(streams), "-t", "1",
            f"http://127.0.0.1:{port}/"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=H2LOAD_TIMEOUT, check=True).stdout
    if f"{n} succeeded" not in out:
        raise RuntimeError(f"h2load did not complete {n} requests:\n{out}")


def measure(shape: str, n: int, warmup: int, app: str, extra: list[str]) -> list[int]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = tempfile.mkdtemp(prefix="h2_cost.")
    # (--blocking-threshold 30: under valgrind a step takes ~50x longer; the monitor must not take it over)
    argv = ["valgrind", "--tool=callgrind", "--separate-threads=no", f"--callgrind-out-file={out}/cg.%p",
            *server_argv("hybrid", app, port, ["--blocking-threshold", "30", *extra])]
    log = open(os.path.join(out, "server.log"), "w")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(argv, cwd=env.REPO_ROOT, stdout=log, stderr=log,
                            env={**os.environ, "PYTHONHASHSEED": "0"})
    try:
        wait_listening(proc, port, START_TIMEOUT)
        h2load(port, warmup, shape)
        subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True, capture_output=True)
        for _ in range(2):  # (each dump counts from the one before)
            h2load(port, n, shape)
            subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True)
    finally:
        stop(proc)
        log.close()
    dumps = sorted(glob.glob(f"{out}/cg.{proc.pid}.*"), key=lambda p: int(p.rsplit(".", 1)[1]))[:2]
    return [round(callgrind_totals(path) / n) for path in dumps]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", action="append", choices=sorted(SHAPES))
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--app", default="bench.apps.plaintext:app")
    parser.add_argument("extra", nargs="*", help="server options (after --)")
    args = parser.parse_args()
    for shape in args.shape or ["8x8", "1x100"]:
        per_request = measure(shape, args.requests, args.warmup, args.app, args.extra)
        print(json.dumps({"shape": shape, "instructions_per_request": per_request}), flush=True)


if __name__ == "__main__":
    main()
