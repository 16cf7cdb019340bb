"""3. blocking mix: /sleep calls time.sleep(0.05), kept busy by 8 clients, while 64 connections hit a fast route.

Two wrk processes run side by side on the client core; the measure is the fast route's requests/s and p99 (and,
for context, how many /sleep requests got through: 8 clients x 20/s = 160/s is the ideal).
"""

from bench.scenarios import Context, Scenario, default_cases, run_cases, warm
from bench.wrk import Wrk

APP = "bench.apps.blocking:app"
SLEEP_CLIENTS = 8


def measure(ctx: Context, case, server):
    s = ctx.settings
    warm(ctx, server, "/fast")
    slow = Wrk(s.wrk, server.port, "/sleep", connections=SLEEP_CLIENTS, duration=s.duration, cpus=s.client_cpus)
    fast = Wrk(s.wrk, server.port, "/fast", connections=s.connections, duration=s.duration, cpus=s.client_cpus)
    slow.start()
    fast.start()
    f = fast.wait()
    sl = slow.wait()
    metrics = {
        "fast_rps": round(f.rps, 1),
        "fast_p50_ms": round(f.p50_ms, 3),
        "fast_p99_ms": round(f.p99_ms, 3),
        "sleep_rps": round(sl.rps, 1),
        "errors": f.errors + f.non_2xx + sl.errors + sl.non_2xx,
    }
    return metrics, [slow.command, fast.command]


def run(ctx: Context) -> dict:
    return {
        "params": {"app": APP, "sleep_clients": SLEEP_CLIENTS, "fast_connections": ctx.settings.connections,
                   "sleep_seconds": 0.05},
        "cases": run_cases(ctx, "blocking_mix", default_cases(ctx, APP), measure),
    }


SCENARIO = Scenario(
    name="blocking_mix",
    title="Blocking mix: /sleep (time.sleep(0.05)) x 8 clients + fast route x 64 connections",
    measures=["fast_rps", "fast_p50_ms", "fast_p99_ms", "sleep_rps"],
    primary="fast_rps",
    higher_is_better=True,
    run=run,
    in_quick=True,
)
