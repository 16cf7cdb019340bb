"""2. json: POST a 1 KB JSON body that the app parses, small JSON answer, 64 connections — requests/s, p99."""

from bench.scenarios import Context, Scenario, default_cases, run_cases, wrk_measure
from bench.wrk import JSON_BODY, lua_script

APP = "bench.apps.json_echo:app"


def run(ctx: Context) -> dict:
    script = lua_script("POST", JSON_BODY, "application/json")
    return {
        "params": {"app": APP, "connections": ctx.settings.connections, "body_bytes": len(JSON_BODY)},
        "cases": run_cases(ctx, "json", default_cases(ctx, APP), wrk_measure("/", script)),
    }


SCENARIO = Scenario(
    name="json",
    title="JSON: POST 1 KB JSON body (parsed), small JSON answer, 64 connections",
    measures=["rps", "p50_ms", "p99_ms", "cpu_us_per_req", "user_us_per_req", "sys_us_per_req",
              "ctx_switches_per_s", "takeovers"],
    primary="rps",
    higher_is_better=True,
    run=run,
)
