"""HTTP/2 (issue 26): h2load (Debian's nghttp2-client) over h2c with prior knowledge, the plaintext app, in two
shapes: 8 connections x 8 concurrent streams, and 1 connection x 100 streams. Servers: hybrid, granian
(`--http auto`: h2c, and it still answers the HTTP/1.1 readiness probe) and hypercorn (h2c prior knowledge by
default); uvicorn has no HTTP/2.

Measures req/s, p50 and p99 of h2load's per-request times, and the server's CPU microseconds per request
(from /proc), the number to compare with the same server's HTTP/1.1 cost.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time

from bench.scenarios import Case, Context, Scenario, run_cases
from bench.servers import cpu_seconds

APP = "bench.apps.plaintext:app"
SHAPES = {"8x8": (8, 8), "1x100": (1, 100)}  # connections, streams per connection
# granian --http 2 would not answer the HTTP/1.1 readiness probe (bench/servers.py); auto serves h2c prior knowledge too
EXTRA = {"granian": "--http auto", "hypercorn": "", "hybrid": ""}


def h2load(port: int, connections: int, streams: int, duration: float, cpus: str | None) -> tuple[dict, str]:
    argv = ["h2load", "-D", str(max(1, round(duration))), "-c", str(connections), "-m", str(streams),
            "-t", "1", f"http://127.0.0.1:{port}/"]
    if cpus:
        argv = ["taskset", "-c", cpus, *argv]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60).stdout
    metrics: dict = {}
    m = re.search(r"finished in [^,]+, ([\d.]+) req/s", out)
    metrics["rps"] = float(m.group(1)) if m else 0.0
    m = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored",
                  out)
    if m:
        metrics["done"], metrics["failed"] = int(m.group(2)), int(m.group(4)) + int(m.group(5))
    m = re.search(r"time for request:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", out)
    if m:  # min, max, mean, sd: h2load prints no percentiles; mean and max stand in for p50 and p99
        metrics["mean_ms"], metrics["max_ms"] = _ms(m.group(3)), _ms(m.group(2))
    return metrics, " ".join(argv)


def _ms(text: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)$", text)
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]


def measure(ctx: Context, case: Case, server):
    s = ctx.settings
    connections, streams = SHAPES[case.variant]
    if s.warmup > 0:
        h2load(server.port, connections, streams, s.warmup, s.client_cpus)
    c0, t0 = cpu_seconds(server.pid), time.monotonic()
    metrics, command = h2load(server.port, connections, streams, s.duration, s.client_cpus)
    used = cpu_seconds(server.pid) - c0
    metrics["server_cpu_pct"] = round(used / (time.monotonic() - t0) * 100)
    metrics["cpu_us_per_request"] = round(used * 1e6 / metrics["done"], 1) if metrics.get("done") else None
    return metrics, [command]


def run(ctx: Context) -> dict:
    if shutil.which("h2load") is None:
        return {"params": {"skipped": "h2load not installed (apt-get install nghttp2-client)"}, "cases": {}}
    servers = [srv for srv in ctx.settings.servers if srv in EXTRA]
    cases = [Case(server=srv, variant=shape, app=APP, extra=EXTRA[srv]) for shape in SHAPES for srv in servers]
    return {
        "params": {"app": APP, "shapes": SHAPES, "load": "h2load, h2c prior knowledge"},
        "cases": run_cases(ctx, "h2", cases, measure),
    }


SCENARIO = Scenario(
    name="h2",
    title="HTTP/2 (h2c): h2load, 8 connections x 8 streams and 1 connection x 100 streams",
    measures=["rps", "mean_ms", "max_ms", "cpu_us_per_request"],
    primary="rps",
    higher_is_better=True,
    run=run,
    in_quick=False,
)
