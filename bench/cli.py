"""python -m bench: set up the peers, run the scenarios, write bench/results/DATE.json and .md."""

from __future__ import annotations

import argparse
import datetime as dt
import os
import shutil
import subprocess
import sys
import time

from bench import env, results
from bench.scenarios import ORDER, Context, Settings, load
from bench.servers import SERVERS

QUICK_SCENARIOS = ["plaintext", "blocking_mix"]


def cpu_plan() -> tuple[str | None, str | None, str | None]:
    """(server CPUs, load-generator CPUs, CPUs for the scaling scenario's servers)."""
    n = len(os.sched_getaffinity(0))
    cpus = sorted(os.sched_getaffinity(0))
    if n < 2 or not shutil.which("taskset"):
        return None, None, None
    if n == 2:
        return str(cpus[0]), str(cpus[1]), f"{cpus[0]},{cpus[1]}"
    return str(cpus[0]), str(cpus[2]), f"{cpus[0]},{cpus[1]}"


def hybrid_status() -> str | None:
    """None when `python -m hybrid --help` works, else why not."""
    try:
        p = subprocess.run([env.hybrid_python(), "-m", "hybrid", "--help"], cwd=env.REPO_ROOT,
                           capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return repr(e)
    if p.returncode != 0:
        return (p.stderr or p.stdout).strip().splitlines()[-1][:200] if (p.stderr or p.stdout).strip() else \
            f"exit {p.returncode}"
    return None


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m bench", description="hybrid vs uvicorn, granian, hypercorn.")
    p.add_argument("--quick", action="store_true",
                   help="plaintext and blocking mix only, short rounds (under 2 minutes); for CI, asserts nothing")
    p.add_argument("--scenarios", help=f"comma-separated subset of: {','.join(ORDER)}")
    p.add_argument("--servers", help=f"comma-separated subset of: {','.join(SERVERS)}")
    p.add_argument("--duration", type=float, help="seconds per measurement (default 5; quick 3)")
    p.add_argument("--rounds", type=int, help="rounds per scenario, servers interleaved (default 3; quick 2)")
    p.add_argument("--warmup", type=float, help="seconds of load before each measurement (default 1)")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--idle-connections", type=int, help="idle scenario (default 5000; quick 1000)")
    p.add_argument("--no-setup", action="store_true", help="do not create or update bench/.venv-peers")
    p.add_argument("--name", help="results file name after the date (default: partial, or quick), e.g. "
                                   "access-log for bench/results/DATE-access-log.md")
    p.add_argument("--no-hybrid-check", action="store_true", help="run hybrid even if --help fails")
    return p.parse_args(argv)


def main(argv=None) -> int:
    a = parse_args(argv)
    started = time.monotonic()
    scenario_names = [s.strip() for s in a.scenarios.split(",")] if a.scenarios else \
        (QUICK_SCENARIOS if a.quick else list(ORDER))
    unknown = [s for s in scenario_names if s not in ORDER]
    if unknown:
        print(f"unknown scenario(s): {', '.join(unknown)}; choose from {', '.join(ORDER)}", file=sys.stderr)
        return 2
    server_names = [s.strip() for s in a.servers.split(",")] if a.servers else list(SERVERS)
    unknown = [s for s in server_names if s not in SERVERS]
    if unknown:
        print(f"unknown server(s): {', '.join(unknown)}; choose from {', '.join(SERVERS)}", file=sys.stderr)
        return 2

    if not a.no_setup:
        env.ensure_peers_venv()
    wrk = env.ensure_wrk()
    notes = []
    if "hybrid" in server_names and not a.no_hybrid_check:
        why = hybrid_status()
        if why:
            notes.append(f"hybrid skipped: `python -m hybrid --help` failed: {why}")
            env.log(notes[-1])
            server_names.remove("hybrid")
    if not server_names:
        print("no server to run", file=sys.stderr)
        return 2

    server_cpus, client_cpus, all_cpus = cpu_plan()
    if not server_cpus:
        notes.append("fewer than 2 CPUs (or no taskset): server and load generator are not pinned")
    today = dt.date.today().isoformat()
    full = not a.quick and scenario_names == list(ORDER) and server_names == list(SERVERS) \
        and a.duration is None and a.rounds is None
    stem = today if full else f"{today}-quick" if a.quick else f"{today}-partial"
    if a.name:
        stem = f"{today}-{a.name}"
    settings = Settings(
        duration=a.duration or (3.0 if a.quick else 5.0),
        rounds=a.rounds or (2 if a.quick else 3),
        warmup=a.warmup if a.warmup is not None else 1.0,
        server_cpus=server_cpus, client_cpus=client_cpus, all_cpus=all_cpus,
        connections=a.connections,
        idle_connections=a.idle_connections or (1000 if a.quick else 5000),
        wrk=wrk, servers=server_names,
        log_dir=env.RESULTS_DIR / "logs" / stem,
        quick=a.quick,
    )
    ctx = Context(settings)
    result = {
        "date": today,
        "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": env.machine_info(),
        "versions": env.versions(),
        "settings": {
            "quick": a.quick, "full": full, "duration": settings.duration, "rounds": settings.rounds,
            "warmup": settings.warmup, "connections": settings.connections,
            "idle_connections": settings.idle_connections, "server_cpus": server_cpus,
            "client_cpus": client_cpus, "scaling_server_cpus": all_cpus, "servers": server_names,
            "scenarios": scenario_names,
        },
        "server_table": {n: {"command": s.command, "workers": s.workers, "idle_args": s.idle_args,
                             "note": s.note} for n, s in SERVERS.items() if n in server_names},
        "notes": notes,
        "scenarios": {},
    }
    specs = load(scenario_names)
    for name in scenario_names:
        t0 = time.monotonic()
        env.log(f"== {name}: {specs[name].title}")
        try:
            ctx.results[name] = specs[name].run(ctx)
        except Exception as e:  # one broken scenario must not lose the others
            env.log(f"scenario {name} failed: {e!r}")
            notes.append(f"scenario {name} failed: {e!r}"[:300])
            continue
        ctx.results[name]["seconds"] = round(time.monotonic() - t0, 1)
        result["scenarios"][name] = ctx.results[name]
    result["ratios"] = results.ratios(result)
    result["targets"] = results.targets(result)
    result["seconds"] = round(time.monotonic() - started, 1)
    jpath, mpath = results.write(result, env.RESULTS_DIR, stem)
    print(results.markdown(result))
    print("Ratios (same run, medians):")
    for line in results.ratio_lines(result):
        print("  " + line)
    print(f"\nWrote {jpath.relative_to(env.REPO_ROOT)} and {mpath.relative_to(env.REPO_ROOT)} "
          f"in {result['seconds']:.0f} s. `python -m bench.report` refreshes docs/benchmarks.md.")
    return 0
