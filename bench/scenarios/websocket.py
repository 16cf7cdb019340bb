"""9. websocket (issue 10): echo with 32 concurrent connections, 16-byte and 64 KiB messages — messages/s, round
trip p50/p99, server CPU per message, server RSS.

``bench/wsclient.c`` (compiled like loadgen.c and sseclient.c) opens 32 WebSocket connections to ``apps/ws_echo.py``
at once and keeps exactly one message in flight on each: a masked binary frame out, the whole echo back, the next
message. It offers no extension, so no server compresses (every server does the same work). After a warm-up it
counts the echoes of a measured window and keeps every round trip. Meanwhile the suite samples the server's CPU
time (user + system of all its processes) at the window's start and end and its RSS through the window.

uvicorn runs twice, once per WebSocket backend (``--ws websockets`` and ``--ws wsproto``); the rows are
``uvicorn-websockets`` and ``uvicorn-wsproto`` and "vs uvicorn" compares with the better of the two in the same run.
hybrid serves WebSockets with wsproto (its default), granian with its own Rust implementation.

Each size runs with two clients (issue 22: hybrid's 64 KiB lead varied with the client): the C one (variants
``16B``, ``64KiB``) and ``bench/wsclient.py``, plain Python asyncio over raw sockets with pre-masked frames, the
same protocol and output (variants ``16B-py``, ``64KiB-py``); its own CPU use is in ``client_cpu_pct``.
"""

from __future__ import annotations

import subprocess
import time

from bench import env
from bench.scenarios import Case, Context, Scenario, run_cases
from bench.scenarios.streaming import run_client
from bench.servers import RunningServer, rss_kb

APP = "bench.apps.ws_echo:app"
PATH = "/echo"
CONNECTIONS = 32
SIZES = {"16B": 16, "64KiB": 65536}
PY_SUFFIX = "-py"  # a variant ending so runs the Python client
VARIANTS = [*SIZES, *(v + PY_SUFFIX for v in SIZES)]
SCALE = 0.6  # 3 s windows in the full run: 4 servers x 2 sizes x 3 rounds stay near two minutes
PREWARM_CONNECTIONS, PREWARM_SECONDS = 8, 0.3
# (row name, server, extra arguments). hypercorn is left out (issue 10 compares these four).
SERVERS = (
    ("hybrid", "hybrid", ""),
    ("uvicorn-websockets", "uvicorn", "--ws websockets"),
    ("uvicorn-wsproto", "uvicorn", "--ws wsproto"),
    ("granian", "granian", ""),
)


def ensure_client() -> str:
    """bench/wsclient.c compiled into the peers' venv (a Python client would be the bottleneck)."""
    try:
        return env.compile_c_tool("wsclient")
    except RuntimeError as exc:
        raise RuntimeError(f"the websocket scenario needs its C client: {exc}") from None


def measure(ctx: Context, case: Case, server: RunningServer):
    s = ctx.settings
    python_client = case.variant.endswith(PY_SUFFIX)
    size = SIZES[case.variant.removesuffix(PY_SUFFIX)]
    exe = ensure_client()
    pin = ["taskset", "-c", s.client_cpus] if s.client_cpus else []
    if python_client:
        pin = [*pin, env.hybrid_python(), "-m", "bench.wsclient"]
    port = str(server.port)
    # A few short connections first, so that no server meets its first WebSocket inside the measurement.
    prewarm = (["taskset", "-c", s.client_cpus] if s.client_cpus else []) + [exe]
    subprocess.run(prewarm + [port, PATH, str(PREWARM_CONNECTIONS), str(size), "0", str(PREWARM_SECONDS)],
                   cwd=env.REPO_ROOT, capture_output=True, timeout=30)
    time.sleep(0.1)
    rss_before = rss_kb(server.pid)
    warmup = max(0.5, s.warmup)
    duration = s.duration * SCALE
    argv = (pin if python_client else [*pin, exe]) + [port, PATH, str(CONNECTIONS), str(size), f"{warmup:g}",
                                                       f"{duration:g}"]
    data, side = run_client(argv, server, timeout=warmup + duration + 30, server_cpu=s.server_cpus)
    cpu = side["c1"] - side["c0"]
    wall = max(side["t1"] - side["t0"], 1e-3)
    msgs = data["messages"]
    metrics = {
        "msgs_per_s": data["msgs_per_s"],
        "rtt_p50_ms": data["rtt_p50_ms"] if msgs else None,
        "rtt_p99_ms": data["rtt_p99_ms"] if msgs else None,
        "cpu_us_per_msg": round(cpu * 1e6 / msgs, 1) if msgs else None,
        "server_cpu_pct": round(cpu / wall * 100),
        "rss_mb": round(side["rss_kb"] / 1024, 1),
        "errors": data["failures"],
        "rss_idle_mb": round(rss_before / 1024, 1),
        "msgs_per_server_cpu_s": round(msgs / cpu) if cpu > 0 else None,
        **{k: v for k, v in data.items() if k not in ("msgs_per_s", "rtt_p50_ms", "rtt_p99_ms", "failures")},
    }
    cmd = " ".join(argv).replace(f" {port} ", " PORT ")
    return metrics, [cmd]


def run(ctx: Context) -> dict:
    s = ctx.settings
    ensure_client()
    cases = [Case(server=srv, variant=v, app=APP, extra=extra, label=row)
             for v in VARIANTS for row, srv, extra in SERVERS if srv in s.servers]
    out = run_cases(ctx, "websocket", cases, measure)
    return {
        "params": {"app": APP, "path": PATH, "connections": CONNECTIONS, "message_bytes": SIZES,
                   "warmup": max(0.5, s.warmup), "duration": s.duration * SCALE,
                   "servers": {row: f"{srv} {extra}".strip() for row, srv, extra in SERVERS},
                   "client": "C (bench/wsclient.c); variants ending -py: Python asyncio (bench/wsclient.py); "
                             "binary frames, no extensions offered"},
        "cases": out,
    }


SCENARIO = Scenario(
    name="websocket",
    title="WebSocket echo: 32 connections, one message in flight each, 16 B and 64 KiB binary messages, "
          "C and Python (-py) clients",
    measures=["msgs_per_s", "rtt_p50_ms", "rtt_p99_ms", "cpu_us_per_msg", "server_cpu_pct", "rss_mb"],
    primary="msgs_per_s",
    higher_is_better=True,
    run=run,
    duration_scale=SCALE,
)
