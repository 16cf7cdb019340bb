"""11. access_log: what operability costs hybrid in the plaintext load — the access log off (the baseline), the
default text line, the JSON line, and the lifecycle collector of --metrics-port attached (access log off), so
"none attached" vs "the metrics collector attached" is the first row against the last. Ratios are against hybrid
without a log.

The access log goes to the server's log file (bench/results/logs/...), as a real deployment writes it: a file, never
a pipe that could fill up and stall the server. Both lines take hybrid's default path (hybrid/logs.py: made directly,
buffered, written in batches at least every 50 ms), which a --log-config would replace. Only hybrid runs here.
"""

from bench.scenarios import Case, Context, Scenario, run_cases, wrk_measure

APP = "bench.apps.plaintext:app"
BASELINE = "no-log"

# variant -> extra flags (the hybrid command already has --no-access-log; a later --access-log wins)
VARIANTS = {
    BASELINE: "",
    "text-log": "--access-log",
    "json-log": "--access-log --access-log-format json",
    "metrics": "--metrics-port 0",
}


def run(ctx: Context) -> dict:
    cases = [Case(server="hybrid", variant=v, app=APP, extra=extra) for v, extra in VARIANTS.items()
             if "hybrid" in ctx.settings.servers]
    return {
        "params": {"app": APP, "connections": ctx.settings.connections, "path": "/", "variants": VARIANTS},
        "cases": run_cases(ctx, "access_log", cases, wrk_measure("/")),
    }


SCENARIO = Scenario(
    name="access_log",
    title="Access log and metrics: hybrid in the plaintext load with the access log off, text, JSON, and with the "
          "metrics collector attached",
    measures=["rps", "p50_ms", "p99_ms", "cpu_us_per_req", "user_us_per_req", "sys_us_per_req"],
    primary="rps",
    higher_is_better=True,
    run=run,
    baseline_variant=BASELINE,
)
