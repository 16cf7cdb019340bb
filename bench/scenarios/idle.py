"""4. idle connections: N idle keep-alive connections (5,000 in the full run) — server RSS per connection, and the
latency of a new request while they are open. Every server gets a long keep-alive timeout here (see servers.py)."""

import json
import subprocess
import sys

from bench import env
from bench.scenarios import Case, Context, Scenario, run_cases
from bench.servers import SERVERS

APP = "bench.apps.plaintext:app"


def measure(ctx: Context, case, server):
    s = ctx.settings
    argv = (["taskset", "-c", s.client_cpus] if s.client_cpus else []) + [
        sys.executable, "-m", "bench.idleclient", "--port", str(server.port), "--pid", str(server.pid),
        "--connections", str(s.idle_connections),
    ]
    proc = subprocess.run(argv, cwd=env.REPO_ROOT, capture_output=True, text=True, timeout=180)
    if proc.returncode != 0:
        raise RuntimeError(f"idle client failed: {proc.stderr[-400:]}")
    data = json.loads(proc.stdout.strip().splitlines()[-1])
    cmd = " ".join(argv).replace(str(server.pid), "PID").replace(str(server.port), "PORT")
    return data, [cmd]


def run(ctx: Context) -> dict:
    cases = [Case(server=srv, variant="-", app=APP, extra=SERVERS[srv].idle_args)
             for srv in ctx.settings.servers]
    return {
        "params": {"app": APP, "connections": ctx.settings.idle_connections},
        "cases": run_cases(ctx, "idle", cases, measure),
    }


SCENARIO = Scenario(
    name="idle",
    title="Idle keep-alive connections: server RSS per connection, latency of a new request meanwhile",
    measures=["kb_per_conn", "new_req_p50_ms", "new_req_max_ms", "still_open"],
    primary="kb_per_conn",
    higher_is_better=False,
    run=run,
)
