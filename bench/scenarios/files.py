"""12. files: Starlette's FileResponse, a 16 KiB and a 1 MiB file, 64 keep-alive connections — requests/s and
server CPU per request. hybrid and granian send the file through the ASGI pathsend extension (sendfile(2));
uvicorn gets Starlette's chunks."""

from bench.scenarios import Context, Scenario, default_cases, run_cases, wrk_measure

APP = "bench.apps.files:app"
VARIANTS = {"16k": "/16k", "1m": "/1m"}


def run(ctx: Context) -> dict:
    measures = {v: wrk_measure(path) for v, path in VARIANTS.items()}

    def measure(ctx, case, server):
        return measures[case.variant](ctx, case, server)

    return {
        "params": {"app": APP, "connections": ctx.settings.connections, "files": {"16k": 16 * 1024, "1m": 1 << 20}},
        "cases": run_cases(ctx, "files", default_cases(ctx, APP, list(VARIANTS)), measure),
    }


SCENARIO = Scenario(
    name="files",
    title="Files: Starlette FileResponse, 16 KiB and 1 MiB, 64 keep-alive connections",
    measures=["rps", "p99_ms", "cpu_us_per_req", "user_us_per_req", "sys_us_per_req", "server_cpu_pct"],
    primary="rps",
    higher_is_better=True,
    run=run,
)
