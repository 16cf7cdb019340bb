"""7. framework: real frameworks — FastAPI (an async and a plain def endpoint), Starlette, Django (async views
through its ASGI handler) and Litestar — each with a GET answered in plain text and the json scenario's POST (1 KB
JSON parsed, small JSON answer): requests/s, p99 and server CPU per request.

hybrid runs in both modes (hybrid, and --mode async as "hybrid-async"). hybrid runs the apps with the frameworks
of the repo's .venv, the peers with the ones pinned in requirements-peers.txt; both versions are recorded.

A case's variant is the framework variant and the method: ``fastapi-def-get``, ``fastapi-def-post``.
``BENCH_FRAMEWORK_VARIANTS=fastapi-def,starlette-get`` (comma-separated: a framework variant of VARIANTS runs both
methods, a name with ``-get`` or ``-post`` only that one) runs only those, for a quicker look; unset, all run."""


from bench.scenarios import Case, Context, Scenario, run_cases, select_variants, wrk_measure
from bench.wrk import JSON_BODY, lua_script

# variant -> (app, GET path, POST path)
VARIANTS = {
    "fastapi-async": ("bench.apps.fastapi_app:app", "/async", "/async"),
    "fastapi-def": ("bench.apps.fastapi_app:app", "/sync", "/sync"),
    "starlette": ("bench.apps.starlette_app:app", "/", "/json"),
    "django": ("bench.apps.django_app:app", "/", "/json"),
    "litestar": ("bench.apps.litestar_app:app", "/", "/json"),
}
METHODS = ("get", "post")
SCALE = 0.75


def measured_variants() -> dict[str, tuple[str, str, str]]:
    """Every measured variant (``<framework variant>-<method>``) -> (app, method, path), as selected."""
    every = {f"{name}-{m}": (app, m.upper(), get if m == "get" else post)
             for name, (app, get, post) in VARIANTS.items() for m in METHODS}
    return select_variants("BENCH_FRAMEWORK_VARIANTS", every, VARIANTS,
                           lambda variant, _spec, name: variant.rsplit("-", 1)[0] == name,
                           f"{', '.join(VARIANTS)} (each may end in -get or -post)")


def cases_for(ctx: Context) -> list[Case]:
    cases = []
    for variant, (app, _method, _path) in measured_variants().items():
        for srv in ctx.settings.servers:
            cases.append(Case(server=srv, variant=variant, app=app))
            if srv == "hybrid":
                cases.append(Case(server=srv, variant=variant, app=app, extra="--mode async", label="hybrid-async"))
    return cases


def run(ctx: Context) -> dict:
    post = lua_script("POST", JSON_BODY, "application/json")
    get = lua_script()
    variants = measured_variants()
    measures = {v: wrk_measure(path, post if method == "POST" else get, duration_scale=SCALE)
                for v, (_app, method, path) in variants.items()}

    def measure(ctx, case, server):
        return measures[case.variant](ctx, case, server)

    return {
        "params": {"apps": {v: f"{a} {m} {p}" for v, (a, m, p) in variants.items()},
                   "connections": ctx.settings.connections, "body_bytes": len(JSON_BODY), "duration_scale": SCALE},
        "cases": run_cases(ctx, "framework", cases_for(ctx), measure),
    }


SCENARIO = Scenario(
    name="framework",
    title="Frameworks: GET (plain text) and the JSON POST through FastAPI (async def, def), Starlette, Django and "
          "Litestar",
    measures=["rps", "p50_ms", "p99_ms", "cpu_us_per_req", "user_us_per_req", "sys_us_per_req",
              "ctx_switches_per_s", "takeovers"],
    primary="rps",
    higher_is_better=True,
    run=run,
)
