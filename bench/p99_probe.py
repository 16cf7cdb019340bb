"""Where the blocking mix's slowest fast requests wait: timestamps from inside the server, not wrk's p99.

    python -m bench.p99_probe [--duration 4] [--runs 1] [-- SERVER ARGS...]

Runs hybrid (pinned to CPU 0) with ``bench/apps/blocking_probe.py``, 8 wrk connections on /sleep and 64 on /fast
(CPU 1), as the blocking_mix scenario does, then reads the app's records and prints, per run: wrk's p99; the
server's estimate of each fast request's round trip (wrk is a closed loop: the time between two responses of a
connection); requests served on other connections while one waited (with 64 connections about 63 is one round;
counts do not depend on how busy the machine is); the share of fast requests that one or more polls listed
ready before the poll whose batch served them; garbage collections by generation; and the takeovers (a /sleep
start to the next fast request on another thread). docs/performance.md has what it found.
"""

from __future__ import annotations

import argparse
import bisect
import os
import signal
import subprocess
import sys
import tempfile
import time
from array import array
from collections import defaultdict
from pathlib import Path

from bench.servers import HOST, free_port, http_probe
from bench.wrk import Wrk

REPO = Path(__file__).resolve().parent.parent


def _get(port: int, path: str) -> None:
    import socket

    with socket.create_connection((HOST, port), timeout=30) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n".encode())
        while s.recv(65536):
            pass


def _load(path: str):
    parts = []
    with open(path, "rb") as f:
        for _ in range(3):
            n = array("q")
            n.fromfile(f, 1)
            a = array("q")
            a.fromfile(f, n[0])
            parts.append(a)
    req, col, pol = parts
    requests = [tuple(req[i:i + 5]) for i in range(0, len(req), 5)]
    collections = [tuple(col[i:i + 4]) for i in range(0, len(col), 4)]
    polls, i = [], 0
    while i < len(pol):
        n = pol[i + 2]
        polls.append((pol[i], pol[i + 1], set(pol[i + 3:i + 3 + n])))
        i += 3 + n
    return requests, collections, polls


def _q(xs, p):
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def analyse(path: str) -> dict:
    requests, collections, polls = _load(path)
    fast = sorted((r for r in requests if r[0] == 0), key=lambda r: r[3])
    sleeps = sorted((r for r in requests if r[0] == 1), key=lambda r: r[3])
    ends = sorted(r[4] for r in fast)
    by_conn = defaultdict(list)
    for r in fast:
        by_conn[r[1]].append(r)
    pairs = [(a, b) for rs in by_conn.values() for a, b in zip(rs, rs[1:], strict=False)]
    trip = sorted((b[4] - a[4]) / 1e6 for a, b in pairs)
    served = sorted(bisect.bisect_left(ends, b[3]) - bisect.bisect_right(ends, a[4]) for a, b in pairs)
    poll_times = [p[0] for p in polls]
    listed_before = 0
    for a, b in pairs:
        port = b[1]
        i, j = bisect.bisect_right(poll_times, a[4]), bisect.bisect_right(poll_times, b[3])
        listed_before += sum(1 for p in polls[i:j] if port in p[2]) >= 2
    gcs, open_ = defaultdict(list), {}
    for phase, gen, t, tid in collections:
        if phase == 0:
            open_[tid] = t
        elif tid in open_:
            gcs[gen].append((t - open_.pop(tid)) / 1e6)
    starts = [r[3] for r in fast]
    takeovers = []
    for s in sleeps:
        k = bisect.bisect_right(starts, s[3])
        while k < len(fast) and fast[k][2] == s[2]:
            k += 1
        if k < len(fast):
            takeovers.append((fast[k][3] - s[3]) / 1e6)
    takeovers.sort()
    seconds = (fast[-1][4] - fast[0][3]) / 1e9
    return {
        "fast": len(fast), "sleep": len(sleeps), "seconds": round(seconds, 2),
        "round_trip_p50_ms": round(_q(trip, .5), 2), "round_trip_p99_ms": round(_q(trip, .99), 2),
        "served_meanwhile_p50": _q(served, .5), "served_meanwhile_p99": _q(served, .99),
        "served_meanwhile_p999": _q(served, .999), "served_meanwhile_max": served[-1],
        "listed_by_2_polls_pct": round(100 * listed_before / len(pairs), 2),
        "collections": {f"gen{g}": {"n": len(d), "median_ms": round(sorted(d)[len(d) // 2], 3),
                                    "max_ms": round(max(d), 3)} for g, d in sorted(gcs.items())},
        "takeover_p50_ms": round(_q(takeovers, .5), 2) if takeovers else None,
        "takeover_p90_ms": round(_q(takeovers, .9), 2) if takeovers else None,
    }


def run(duration: float, server_args: list[str], wrk: str = "wrk") -> dict:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "probe.bin")
        env = dict(os.environ, PROBE_OUT=out, PYTHONPATH=str(REPO))
        argv = ["taskset", "-c", "0", sys.executable, "-m", "hybrid", "bench.apps.blocking_probe:app",
                "--host", HOST, "--port", str(port), "--no-access-log", *server_args]
        proc = subprocess.Popen(argv, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            while not http_probe(port):
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("the server did not start")
                time.sleep(0.05)
            Wrk(wrk, port, "/fast", connections=64, duration=1, cpus="1").run()
            _get(port, "/probe-reset")
            slow = Wrk(wrk, port, "/sleep", connections=8, duration=duration, cpus="1")
            fast = Wrk(wrk, port, "/fast", connections=64, duration=duration, cpus="1")
            slow.start()
            fast.start()
            f = fast.wait()
            slow.wait()
            _get(port, "/probe-dump")
            result = {"wrk_fast_p99_ms": f.p99_ms, "wrk_fast_rps": round(f.rps)}
            result.update(analyse(out))
            return result
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--duration", type=float, default=4.0)
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("server_args", nargs="*", help="more hybrid arguments (after --)")
    a = p.parse_args()
    for _ in range(a.runs):
        with open("/proc/loadavg") as f:
            load = f.read().split()[0]
        print({"load": load, **run(a.duration, a.server_args)}, flush=True)


if __name__ == "__main__":
    main()
