"""6. scaling: --workers 2 against --workers 1 on the plaintext and json scenarios.

Both settings get the same CPUs (all of them) and the load generator stays on its own core, so on a 2-core machine
the second worker shares a core with wrk: the ratio shows whether a second process helps, not the ideal 2x."""

from bench.scenarios import Case, Context, Scenario, run_cases, wrk_measure
from bench.stats import ratio
from bench.wrk import JSON_BODY, lua_script

APPS = {"plaintext": "bench.apps.plaintext:app", "json": "bench.apps.json_echo:app"}
SCALE = 0.6


def run(ctx: Context) -> dict:
    s = ctx.settings
    scripts = {"plaintext": None, "json": lua_script("POST", JSON_BODY, "application/json")}
    cases = [
        Case(server=srv, variant=f"{load}-w{w}", app=APPS[load], workers=w, cpus=s.all_cpus)
        for load in APPS for w in (1, 2) for srv in s.servers
    ]

    def measure(ctx, case, server):
        load = case.variant.rsplit("-", 1)[0]
        return wrk_measure("/", scripts[load], duration_scale=SCALE)(ctx, case, server)

    out = run_cases(ctx, "scaling", cases, measure)
    derived = {}
    for srv in s.servers:
        for load in APPS:
            one = out.get(f"{srv}/{load}-w1", {})
            two = out.get(f"{srv}/{load}-w2", {})
            if two.get("status") not in (None, "ok"):
                derived[f"{srv}/{load}"] = two.get("status")
                continue
            r = ratio(two.get("summary", {}).get("rps", {}).get("median"),
                      one.get("summary", {}).get("rps", {}).get("median"))
            derived[f"{srv}/{load}"] = r
    return {
        "params": {"server_cpus": s.all_cpus, "client_cpus": s.client_cpus, "duration_scale": SCALE,
                   "connections": s.connections},
        "cases": out,
        "derived": {"workers2_over_workers1": derived},
    }


SCENARIO = Scenario(
    name="scaling",
    title="Scaling: --workers 2 against --workers 1 (plaintext and JSON), server on all cores",
    measures=["rps", "p99_ms", "server_cpu_pct"],
    primary="rps",
    higher_is_better=True,
    run=run,
)
