"""7. framework: the json scenario through real frameworks — FastAPI (an async and a plain def endpoint),
Starlette, Django (async view through its ASGI handler) and Litestar — requests/s, p99 and CPU per request.

hybrid runs in both modes (hybrid, and --mode async as "hybrid-async"). hybrid runs the apps with the frameworks
of the repo's .venv, the peers with the ones pinned in requirements-peers.txt; both versions are recorded.

``BENCH_FRAMEWORK_VARIANTS=fastapi-def,fastapi-async`` (comma-separated names of VARIANTS) runs only those
variants, for a quicker look at one framework; unset, every variant runs."""

import os

from bench.scenarios import Case, Context, Scenario, run_cases, wrk_measure
from bench.wrk import JSON_BODY, lua_script

# variant -> (app, path)
VARIANTS = {
    "fastapi-async": ("bench.apps.fastapi_app:app", "/async"),
    "fastapi-def": ("bench.apps.fastapi_app:app", "/sync"),
    "starlette": ("bench.apps.starlette_app:app", "/json"),
    "django": ("bench.apps.django_app:app", "/json"),
    "litestar": ("bench.apps.litestar_app:app", "/json"),
}
SCALE = 0.75


def selected_variants() -> dict[str, tuple[str, str]]:
    names = [n.strip() for n in os.environ.get("BENCH_FRAMEWORK_VARIANTS", "").split(",") if n.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"BENCH_FRAMEWORK_VARIANTS: unknown {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    return {n: VARIANTS[n] for n in names} if names else VARIANTS


def cases_for(ctx: Context) -> list[Case]:
    cases = []
    for variant, (app, _path) in selected_variants().items():
        for srv in ctx.settings.servers:
            cases.append(Case(server=srv, variant=variant, app=app))
            if srv == "hybrid":
                cases.append(Case(server=srv, variant=variant, app=app, extra="--mode async", label="hybrid-async"))
    return cases


def run(ctx: Context) -> dict:
    script = lua_script("POST", JSON_BODY, "application/json")
    variants = selected_variants()
    measures = {v: wrk_measure(path, script, duration_scale=SCALE) for v, (_app, path) in variants.items()}

    def measure(ctx, case, server):
        return measures[case.variant](ctx, case, server)

    return {
        "params": {"apps": {v: a for v, (a, _p) in variants.items()}, "connections": ctx.settings.connections,
                   "body_bytes": len(JSON_BODY), "duration_scale": SCALE},
        "cases": run_cases(ctx, "framework", cases_for(ctx), measure),
    }


SCENARIO = Scenario(
    name="framework",
    title="Frameworks: the JSON scenario through FastAPI (async def, def), Starlette, Django and Litestar",
    measures=["rps", "p50_ms", "p99_ms", "cpu_us_per_req", "user_us_per_req", "sys_us_per_req",
              "ctx_switches_per_s", "takeovers"],
    primary="rps",
    higher_is_better=True,
    run=run,
)
