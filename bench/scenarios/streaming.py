"""8. streaming (issue 9): server-sent events, 100 and 1,000 concurrent streams — events/s, time to first byte,
server RSS and server CPU per event.

``bench/sseclient.c`` (compiled like loadgen.c) opens all the streams at once to ``GET /sse?n=...`` of
``apps/sse.py`` (one ``http.response.body`` per event, ``await asyncio.sleep(0)`` between events, so every stream
sends as fast as the loop allows), reads and counts every event, and after a warm-up counts the events of a
measured window. Meanwhile the suite samples the server's CPU time (user + system of all its processes) at the
window's start and end, and its RSS (all its processes) through the window: the table's RSS is the peak.

A stream is sent far more events than it can receive in the run, so every stream is still open at the end and the
client closes it (the app notices the disconnect and stops); a stream whose response ends earlier, that gets no
byte, a non-2xx status or cannot connect is a failure.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time

from bench import env
from bench.scenarios import Case, Context, Scenario, run_cases
from bench.servers import RunningServer, cpu_seconds, rss_kb

APP = "bench.apps.sse:app"
STREAMS = (100, 1000)
EVENTS_PER_STREAM = 100_000_000  # never reached within a run: streams end when the client closes them
PATH = f"/sse?n={EVENTS_PER_STREAM}"
SCALE = 0.6  # 3 s windows in the full run: 2 x 3 cases x 3 rounds stay near two minutes
PREWARM_STREAMS, PREWARM_SECONDS = 20, 0.3
RSS_EVERY = 0.25
# granian serves at most --backpressure requests at once, backlog/workers = 1024 by default: too close to the
# 1,000 streams (plus the warm-up's, until the server notices they left). Lifted as in the idle scenario.
EXTRA = {"granian": "--backpressure 16384"}


def ensure_client() -> str:
    """bench/sseclient.c compiled into the peers' venv (a Python client would be the bottleneck)."""
    try:
        return env.compile_c_tool("sseclient")
    except RuntimeError as exc:
        raise RuntimeError(f"the streaming scenario needs its C client: {exc}") from None


def _softirq_seconds(cpu: str | None) -> float | None:
    """Softirq time of one CPU since boot (/proc/stat): loopback TCP processing on the server's core. Recorded for
    context only; with tick-based accounting the server's own system time already includes what ran in its
    context."""
    if cpu is None or not cpu.isdigit():
        return None
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{cpu} "):
                return int(line.split()[7]) / os.sysconf("SC_CLK_TCK")
    return None


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)  # our own client, by PID
        proc.wait(5)


def run_client(argv: list[str], server: RunningServer, timeout: float, server_cpu: str | None) -> tuple[dict, dict]:
    """Run the client; between its "start" and "end" lines sample the server's CPU time and RSS.
    Returns (the client's JSON, the server-side numbers)."""
    proc = subprocess.Popen(argv, cwd=env.REPO_ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    fd = proc.stdout.fileno()
    buf = b""
    side: dict = {}
    rss_peak = 0
    deadline = time.monotonic() + timeout
    try:
        while b"end\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError("streaming client did not finish in time")
            ready, _, _ = select.select([fd], [], [], min(RSS_EVERY, left))
            if "c0" in side:
                rss_peak = max(rss_peak, rss_kb(server.pid))
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            buf += chunk
            if "c0" not in side and b"start\n" in buf:
                side["c0"], side["t0"] = cpu_seconds(server.pid), time.monotonic()
                side["s0"] = _softirq_seconds(server_cpu)
                rss_peak = rss_kb(server.pid)
        if b"end\n" in buf:
            side["c1"], side["t1"] = cpu_seconds(server.pid), time.monotonic()
            side["s1"] = _softirq_seconds(server_cpu)
            rss_peak = max(rss_peak, rss_kb(server.pid))
        out, err = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        _stop(proc)
    buf += out
    if proc.returncode != 0 or "c1" not in side:
        raise RuntimeError(f"streaming client failed (exit {proc.returncode}): {err.decode(errors='replace')[-300:]}")
    data = json.loads(buf.decode().strip().splitlines()[-1])
    side["rss_kb"] = rss_peak
    return data, side


def measure(ctx: Context, case: Case, server: RunningServer):
    s = ctx.settings
    streams = int(case.variant)
    exe = ensure_client()
    pin = ["taskset", "-c", s.client_cpus] if s.client_cpus else []
    port = str(server.port)
    # A few short streams first, so that no server meets its first stream inside the measurement.
    subprocess.run(pin + [exe, port, PATH, str(PREWARM_STREAMS), "0", str(PREWARM_SECONDS)], cwd=env.REPO_ROOT,
                   capture_output=True, timeout=30)
    time.sleep(0.2)
    rss_before = rss_kb(server.pid)
    warmup = max(0.5, s.warmup)  # all streams opened and flowing before the window
    duration = s.duration * SCALE
    argv = pin + [exe, port, PATH, str(streams), f"{warmup:g}", f"{duration:g}"]
    data, side = run_client(argv, server, timeout=warmup + duration + 30, server_cpu=s.server_cpus)
    cpu = side["c1"] - side["c0"]
    wall = max(side["t1"] - side["t0"], 1e-3)
    events = data["events"]
    metrics = {
        "events_per_s": data["events_per_s"],
        "ttfb_p50_ms": data["ttfb_p50_ms"],
        "ttfb_p99_ms": data["ttfb_p99_ms"],
        "rss_mb": round(side["rss_kb"] / 1024, 1),
        "cpu_us_per_event": round(cpu * 1e6 / events, 2) if events else None,
        "server_cpu_pct": round(cpu / wall * 100),
        "errors": data["failures"],
        "rss_idle_mb": round(rss_before / 1024, 1),
        "rss_per_stream_kb": round((side["rss_kb"] - rss_before) / streams, 1),
        "server_core_softirq_pct": round((side["s1"] - side["s0"]) / wall * 100)
        if side.get("s0") is not None and side.get("s1") is not None else None,
        **{k: v for k, v in data.items() if k not in ("events_per_s", "ttfb_p50_ms", "ttfb_p99_ms")},
    }
    cmd = " ".join(argv).replace(f" {port} ", " PORT ")
    return metrics, [cmd]


def run(ctx: Context) -> dict:
    s = ctx.settings
    ensure_client()
    cases = [Case(server=srv, variant=str(n), app=APP, extra=EXTRA.get(srv, ""))
             for n in STREAMS for srv in s.servers]
    return {
        "params": {"app": APP, "path": PATH, "streams": list(STREAMS), "warmup": max(0.5, s.warmup),
                   "duration": s.duration * SCALE, "event_bytes": 18, "extra_args": EXTRA,
                   "client": "C (bench/sseclient.c)"},
        "cases": run_cases(ctx, "streaming", cases, measure),
    }


SCENARIO = Scenario(
    name="streaming",
    title="Streaming: server-sent events, 100 and 1,000 concurrent streams, each as fast as the loop allows",
    measures=["events_per_s", "ttfb_p50_ms", "ttfb_p99_ms", "rss_mb", "cpu_us_per_event", "server_cpu_pct"],
    primary="events_per_s",
    higher_is_better=True,
    run=run,
    duration_scale=SCALE,
)
