"""7. framework: the json scenario through FastAPI (an async endpoint and a plain def endpoint) — requests/s and p99.

hybrid runs the app with the FastAPI of the repo's .venv, the peers with the one pinned in requirements-peers.txt;
both versions are recorded in the results."""

from bench.scenarios import Case, Context, Scenario, run_cases, wrk_measure
from bench.wrk import JSON_BODY, lua_script

APP = "bench.apps.fastapi_app:app"
SCALE = 0.75


def run(ctx: Context) -> dict:
    script = lua_script("POST", JSON_BODY, "application/json")
    cases = [Case(server=srv, variant=v, app=APP) for v in ("async", "sync") for srv in ctx.settings.servers]
    measures = {v: wrk_measure(f"/{v}", script, duration_scale=SCALE) for v in ("async", "sync")}

    def measure(ctx, case, server):
        return measures[case.variant](ctx, case, server)

    return {
        "params": {"app": APP, "connections": ctx.settings.connections, "body_bytes": len(JSON_BODY),
                   "duration_scale": SCALE},
        "cases": run_cases(ctx, "framework", cases, measure),
    }


SCENARIO = Scenario(
    name="framework",
    title="Framework: the JSON scenario through FastAPI (async def and plain def endpoints)",
    measures=["rps", "p50_ms", "p99_ms", "cpu_us_per_req", "user_us_per_req", "sys_us_per_req",
              "ctx_switches_per_s", "takeovers"],
    primary="rps",
    higher_is_better=True,
    run=run,
)
