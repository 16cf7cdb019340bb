"""1. plaintext: GET, 13-byte body, 64 keep-alive connections — requests/s, p50, p99."""

from bench.scenarios import Context, Scenario, default_cases, run_cases, wrk_measure

APP = "bench.apps.plaintext:app"


def run(ctx: Context) -> dict:
    cases = default_cases(ctx, APP)
    return {
        "params": {"app": APP, "connections": ctx.settings.connections, "path": "/"},
        "cases": run_cases(ctx, "plaintext", cases, wrk_measure("/")),
    }


SCENARIO = Scenario(
    name="plaintext",
    title="Plaintext: GET, 13-byte body, 64 keep-alive connections",
    measures=["rps", "p50_ms", "p99_ms", "cpu_us_per_req", "user_us_per_req", "sys_us_per_req",
              "ctx_switches_per_s", "takeovers"],
    primary="rps",
    higher_is_better=True,
    run=run,
    in_quick=True,
)
