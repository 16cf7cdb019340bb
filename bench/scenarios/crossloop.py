"""14. crossloop (issue 21): a message published by a POST route reaching 16 SSE or WebSocket subscribers —
publish-to-receive latency p50/p99/max per delivery, deliveries, lost, server CPU per delivery.

The app is the one tests/test_crossloop_*.py serve, ``apps/crossloop_patterns.py`` (FastAPI): module-global
asyncio objects between a POST route and the streams. Under hybrid's default mode the POST runs on a serving
thread's loop and the streams in the async pool, so every delivery crosses loops; ``--mode async`` (row
``hybrid-async``) serves everything on one loop, as uvicorn does. Issue 21's claim, p99 under 10 ms and close to
uvicorn's, is this scenario's (``results.targets``), not the tests'; the tests check that nothing hangs or is lost.

``bench/xloopclient.py`` (one asyncio process on uvloop, pinned to the client core) opens the subscribers, waits for
each one's ``ready``, then publishes one message at a time on a keep-alive connection: the next goes out once every
subscriber has the last one and the POST is answered. Meanwhile the suite samples the server's CPU time.
"""

from __future__ import annotations

import time

from bench import env
from bench.scenarios import Case, Context, Scenario, run_cases
from bench.scenarios.streaming import run_client
from bench.servers import RunningServer

APP = "bench.apps.crossloop_patterns:app"
SUBSCRIBERS = 16
SCALE = 0.6  # 3 s windows in the full run
# variant: (stream kind, stream path, publish path prefix); the patterns of tests/test_crossloop_*.py
PATTERNS = {
    "sse-queue": ("sse", "/events", "/publish/"),    # Starlette StreamingResponse awaiting a Queue a POST feeds
    "sse-event": ("sse", "/event-stream", "/event/"),  # ... awaiting an asyncio.Event a POST sets
    "ws-queue": ("ws", "/ws-queue", "/publish/"),    # a WebSocket awaiting a Queue a POST feeds
    "ws-broadcast": ("ws", "/ws", "/send/"),         # FastAPI's ConnectionManager.broadcast from a POST route
}
# Streams whose client left wait for a message that never comes (Starlette's StreamingResponse does not listen for
# http.disconnect under ASGI 2.4): a short graceful bound ends them at stop, instead of the suite's 5 s SIGKILL.
GRACE = {"hybrid": "--timeout-graceful-shutdown 1", "uvicorn": "--timeout-graceful-shutdown 1",
         "hypercorn": "--graceful-timeout 1", "granian": ""}
# (row name, server, extra arguments)
SERVERS = (
    ("hybrid", "hybrid", ""),
    ("hybrid-async", "hybrid", "--mode async"),
    ("uvicorn", "uvicorn", "--ws websockets"),
    ("granian", "granian", ""),
    ("hypercorn", "hypercorn", ""),
)


def cases(servers: list[str]) -> list[Case]:
    return [Case(server=srv, variant=v, app=APP, extra=f"{extra} {GRACE[srv]}".strip(), label=row)
            for v in PATTERNS for row, srv, extra in SERVERS if srv in servers]


def client_argv(ctx: Context, port: int, variant: str, warmup: float, duration: float) -> list[str]:
    kind, stream, publish = PATTERNS[variant]
    pin = ["taskset", "-c", ctx.settings.client_cpus] if ctx.settings.client_cpus else []
    return [*pin, env.hybrid_python(), "-m", "bench.xloopclient", str(port), kind, stream, publish,
            str(SUBSCRIBERS), f"{warmup:g}", f"{duration:g}"]


def metrics_of(data: dict, side: dict) -> dict:
    """The client's JSON and the server's CPU seconds over the window -> the round's metrics."""
    cpu = side["c1"] - side["c0"]
    wall = max(side["t1"] - side["t0"], 1e-3)
    n = data["deliveries"]
    return {
        "p50_ms": data["p50_ms"],
        "p99_ms": data["p99_ms"],
        "max_ms": data["max_ms"],
        "deliveries": n,
        "lost": data["lost"],
        "cpu_us_per_delivery": round(cpu * 1e6 / n, 1) if n else None,
        "server_cpu_pct": round(cpu / wall * 100),
        # A message not delivered, a subscriber that failed, or a POST failed or not answered: any is a broken run.
        "errors": data["lost"] + data["failures"] + data["publish_failures"],
        **{k: v for k, v in data.items() if k not in ("p50_ms", "p99_ms", "max_ms", "deliveries", "lost")},
    }


def measure(ctx: Context, case: Case, server: RunningServer):
    s = ctx.settings
    warmup = max(0.5, s.warmup)
    duration = s.duration * SCALE
    argv = client_argv(ctx, server.port, case.variant, warmup, duration)
    data, side = run_client(argv, server, timeout=warmup + duration + 30, server_cpu=s.server_cpus)
    if not data["deliveries"] and not data["lost"] and not data["publish_failures"]:
        detail = data["publish_error"] or "; ".join(data["errors_seen"]) or f"{data['ready']} ready"
        raise RuntimeError(f"no delivery measured: {detail}")
    cmd = " ".join(argv).replace(f" {server.port} ", " PORT ")
    time.sleep(0.05)
    return metrics_of(data, side), [cmd]


def run(ctx: Context) -> dict:
    s = ctx.settings
    return {
        "params": {"app": APP, "subscribers": SUBSCRIBERS, "patterns": {v: f"{k} {st} <- POST {p}<msg>" for v, (
            k, st, p) in PATTERNS.items()}, "warmup": max(0.5, s.warmup), "duration": s.duration * SCALE,
            "servers": {row: f"{srv} {extra} {GRACE[srv]}".strip() for row, srv, extra in SERVERS},
            "client": "bench/xloopclient.py: one asyncio process (uvloop), raw sockets, one message in flight"},
        "cases": run_cases(ctx, "crossloop", cases(s.servers), measure),
    }


SCENARIO = Scenario(
    name="crossloop",
    title=f"Cross-loop delivery: a POST publishes, {SUBSCRIBERS} SSE or WebSocket subscribers receive, one message "
          f"at a time (FastAPI)",
    measures=["p50_ms", "p99_ms", "max_ms", "deliveries", "lost", "cpu_us_per_delivery", "server_cpu_pct"],
    primary="p99_ms",
    higher_is_better=False,
    run=run,
    duration_scale=SCALE,
)
