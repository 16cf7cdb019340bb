"""5. latency under a fixed offered load, open loop: 50% of uvicorn's plaintext maximum measured in this run
(taken from the plaintext scenario when it ran, else measured here) — p50, p99, p99.9, coordinated omission corrected
(bench/loadgen.c measures every request from its scheduled send time; bench/loadgen.py is the same in Python, the
fallback where no C compiler exists)."""

import json
import subprocess

from bench import env
from bench.scenarios import Case, Context, Scenario, run_cases, warm
from bench.servers import SERVERS, RunningServer
from bench.wrk import Wrk

APP = "bench.apps.plaintext:app"
FRACTION = 0.5


def uvicorn_max(ctx: Context) -> tuple[float, str]:
    plain = ctx.results.get("plaintext", {}).get("cases", {}).get("uvicorn/-", {})
    med = plain.get("summary", {}).get("rps", {}).get("median")
    if med:
        return med, "uvicorn's median plaintext req/s in this run"
    s = ctx.settings
    server = RunningServer(SERVERS["uvicorn"], APP, workers=1, cpus=s.server_cpus,
                           log_path=s.log_dir / "fixed_load-calibrate.log")
    server.start()
    try:
        warm(ctx, server)
        r = Wrk(s.wrk, server.port, "/", connections=s.connections, duration=max(3, s.duration / 2),
                cpus=s.client_cpus).run()
    finally:
        server.stop()
    return r.rps, "uvicorn plaintext req/s measured by a calibration run"


def run(ctx: Context) -> dict:
    s = ctx.settings
    peak, source = uvicorn_max(ctx)
    rate = round(peak * FRACTION)
    env.log(f"fixed_load: offered rate {rate} req/s ({FRACTION:.0%} of {peak:.0f}, {source})")

    gen = env.ensure_loadgen()

    def measure(ctx, case, server):
        pin = ["taskset", "-c", s.client_cpus] if s.client_cpus else []
        if gen[-1] == "bench.loadgen":
            argv = pin + gen + ["--port", str(server.port), "--rate", str(rate), "--duration", str(s.duration),
                                "--warmup", "1", "--connections", str(s.connections), "--drain", "5"]
        else:  # PORT PATH RATE DURATION WARMUP CONNECTIONS DRAIN
            argv = pin + gen + [str(server.port), "/", str(rate), str(s.duration), "1", str(s.connections), "5"]
        proc = subprocess.run(argv, cwd=env.REPO_ROOT, capture_output=True, text=True,
                              timeout=s.duration + 60)
        if proc.returncode != 0:
            raise RuntimeError(f"loadgen failed: {proc.stderr[-400:]}")
        data = json.loads(proc.stdout.strip().splitlines()[-1])
        data["errors"] = data.get("errors", 0) + data.get("non_2xx", 0) + data.get("timeouts", 0)
        cmd = " ".join(argv).replace(str(server.port), "PORT")
        return data, [cmd]

    cases = [Case(server=srv, variant="-", app=APP) for srv in s.servers]
    return {
        "params": {
            "app": APP,
            "generator": "Python (bench/loadgen.py)" if gen[-1] == "bench.loadgen" else "C (bench/loadgen.c)",
            "offered_rps": rate,
            "fraction": FRACTION,
            "reference_rps": round(peak, 1),
            "reference": source,
            "connections": s.connections,
        },
        "cases": run_cases(ctx, "fixed_load", cases, measure),
    }


SCENARIO = Scenario(
    name="fixed_load",
    title="Fixed offered load (open loop, 50% of uvicorn's max), coordinated omission corrected",
    measures=["achieved_rps", "p50_ms", "p99_ms", "p999_ms", "max_ms"],
    primary="p999_ms",
    higher_is_better=False,
    run=run,
)
