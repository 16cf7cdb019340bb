"""Scenarios: one small module each, registered in SCENARIOS (in run order).

A scenario module defines ``SCENARIO = Scenario(...)``. Most are a list of cases (server x variant) and a function
that measures one case against a started server; ``run_cases`` starts each server fresh, interleaves the servers over
the rounds (the order rotates every round), and keeps every round's numbers.
"""

from __future__ import annotations

import importlib
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from bench import env
from bench.servers import SERVERS, RunningServer, ServerFailed, context_switches, cpu_seconds, cpu_times, hybrid_stats
from bench.stats import summarise
from bench.wrk import Wrk


@dataclass
class Settings:
    duration: float
    rounds: int
    warmup: float
    server_cpus: str | None
    client_cpus: str | None
    all_cpus: str | None
    connections: int
    idle_connections: int
    wrk: str
    servers: list[str]
    log_dir: Path
    quick: bool = False


@dataclass
class Context:
    settings: Settings
    results: dict = field(default_factory=dict)  # scenario name -> result, filled in as the run goes


@dataclass
class Case:
    server: str
    variant: str
    app: str
    workers: int = 1
    cpus: str | None = None  # None: settings.server_cpus
    extra: str = ""
    tls: bool = False  # the server speaks HTTPS (extra has its certificate options)
    label: str = ""  # the row's name when it is not the server's (uvicorn-wsproto: uvicorn with --ws wsproto)

    @property
    def row(self) -> str:
        return self.label or self.server


@dataclass
class Scenario:
    name: str
    title: str
    measures: list[str]          # metric keys for the table, in order
    primary: str                 # metric the ratios compare
    higher_is_better: bool
    run: Callable[[Context], dict]
    in_quick: bool = False
    duration_scale: float = 1.0
    # Ratios against this variant of the same server (the access_log rows: against hybrid without a log), instead
    # of against the other servers.
    baseline_variant: str | None = None
    # The peers the table's ratio columns divide by (results.ratios computes them against every peer).
    versus: tuple[str, ...] = ("uvicorn", "granian")
    # Rewrites, in place, this scenario's result from an older results file into today's variant and metric names
    # (bench.report applies it to every file it reads).
    upgrade: Callable[[dict], None] | None = None


MEASURE_LABELS = {
    "rps": "req/s",
    "p50_ms": "p50 ms",
    "p99_ms": "p99 ms",
    "p999_ms": "p99.9 ms",
    "max_ms": "max ms",
    "fast_rps": "fast req/s",
    "fast_p50_ms": "fast p50 ms",
    "fast_p99_ms": "fast p99 ms",
    "sleep_rps": "/sleep req/s",
    "kb_per_conn": "KB/conn",
    "new_req_p50_ms": "new req p50 ms",
    "new_req_max_ms": "new req max ms",
    "still_open": "conns still open",
    "offered_rps": "offered req/s",
    "achieved_rps": "achieved req/s",
    "errors": "errors",
    "rps_per_core": "req per server CPU-s",
    "server_cpu_pct": "server CPU %",
    "other_cpu_pct": "other CPU %",
    "events_per_s": "events/s",
    "ttfb_p50_ms": "TTFB p50 ms",
    "ttfb_p99_ms": "TTFB p99 ms",
    "rss_mb": "server RSS MiB",
    "cpu_us_per_event": "server CPU µs/event",
    "msgs_per_s": "msg/s",
    "rtt_p50_ms": "round trip p50 ms",
    "rtt_p99_ms": "round trip p99 ms",
    "cpu_us_per_msg": "server CPU µs/msg",
    "cpu_us_per_req": "server CPU µs/req",
    "cpu_us_per_conn": "server CPU µs/new conn",
    "user_us_per_req": "user µs/req",
    "sys_us_per_req": "sys µs/req",
    "ctx_switches_per_s": "ctx switches/s",
    "takeovers": "takeovers",
    "monitor_wakeups_per_s": "monitor wake-ups/s",
    "deliveries": "deliveries",
    "lost": "lost",
    "cpu_us_per_delivery": "server CPU µs/delivery",
}

ORDER = ["plaintext", "json", "blocking_mix", "idle", "fixed_load", "framework", "scaling", "streaming", "websocket",
         "tls", "access_log", "files", "h2", "crossloop"]


def _busy_seconds() -> float:
    """All CPUs' non-idle time since boot, from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _own_seconds() -> float:
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


class Interference:
    """CPU used by everything that is neither the server nor the suite (and its load generators) during a round,
    in % of one core: on a shared machine this is the noise that spread reports."""

    def __init__(self, server: RunningServer):
        self.server = server
        self.t = time.monotonic()
        self.busy = _busy_seconds()
        self.own = _own_seconds()
        self.srv = cpu_seconds(server.pid)

    def pct(self) -> int:
        wall = time.monotonic() - self.t
        other = (_busy_seconds() - self.busy) - (_own_seconds() - self.own) - (cpu_seconds(self.server.pid) - self.srv)
        return max(0, round(other / max(wall, 1e-3) * 100))


def load(names: list[str] | None = None) -> dict[str, Scenario]:
    out = {}
    for name in names or ORDER:
        mod = importlib.import_module(f"bench.scenarios.{name}")
        out[name] = mod.SCENARIO
    return out


def warm(ctx: Context, server: RunningServer, path: str = "/", script: str | None = None,
         connections: int | None = None) -> None:
    s = ctx.settings
    if s.warmup <= 0:
        return
    Wrk(s.wrk, server.port, path, connections=connections or s.connections, duration=s.warmup,
        cpus=s.client_cpus, script=script).run()


def run_cases(ctx: Context, scenario_name: str, cases: list[Case],
              measure: Callable[[Context, Case, RunningServer], tuple[dict, list[str]]]) -> dict:
    """Run every case once per round, servers interleaved; returns {case_key: {...}}."""
    s = ctx.settings
    out: dict[str, dict] = {}
    for c in cases:
        out[f"{c.row}/{c.variant}"] = {"server": c.row, "variant": c.variant, "rounds": [], "commands": [],
                                       "status": "ok"}
    skip: set[str] = set()
    for rnd in range(s.rounds):
        shift = rnd % len(cases) if cases else 0
        order = cases[shift:] + cases[:shift]
        for c in order:
            key = f"{c.row}/{c.variant}"
            if key in skip:
                continue
            spec = SERVERS[c.server]
            log_path = s.log_dir / f"{scenario_name}-{c.row}-{c.variant}-r{rnd + 1}.log"
            server = RunningServer(spec, c.app, workers=c.workers, cpus=c.cpus or s.server_cpus,
                                   log_path=log_path, extra=c.extra, tls=c.tls)
            env.log(f"{scenario_name} round {rnd + 1}/{s.rounds}: {key}")
            try:
                server.start()
            except ServerFailed as e:
                status = "not supported" if e.unsupported else "failed to start"
                out[key]["error"] = str(e)[-400:]
                if not out[key]["commands"]:
                    out[key]["commands"] = [server.command]
                if e.unsupported:  # a usage error will not go away in the next round
                    out[key]["status"] = status
                    skip.add(key)
                else:
                    out[key].setdefault("round_errors", []).append(f"round {rnd + 1}: {status}")
                env.log(f"  {key}: {status}: {str(e).splitlines()[0][:200]}")
                continue
            t0 = time.monotonic()
            try:
                noise = Interference(server)
                metrics, commands = measure(ctx, c, server)
                metrics["other_cpu_pct"] = noise.pct()
                if not server.alive():
                    metrics["crashed"] = True
                out[key]["rounds"].append(metrics)
                if not out[key]["commands"]:
                    out[key]["commands"] = [server.command] + commands
                env.log("  " + ", ".join(f"{k}={v}" for k, v in metrics.items() if not isinstance(v, dict)))
            except Exception as e:  # a broken round is reported, not fatal for the suite
                out[key].setdefault("round_errors", []).append(f"round {rnd + 1}: {e!r}"[:400])
                env.log(f"  {key}: round failed: {e!r}"[:300])
            finally:
                server.stop()
            if c.server == "hybrid" and out[key]["rounds"]:
                try:  # its shutdown line: takeovers and monitor wake-ups over the whole round
                    out[key]["rounds"][-1].update(hybrid_stats(log_path.read_text(errors="replace")))
                except OSError:
                    pass
            out[key]["seconds"] = round(out[key].get("seconds", 0) + time.monotonic() - t0, 1)
    for v in out.values():
        v["summary"] = summarise(v["rounds"])
        if v["status"] == "ok" and not v["rounds"]:
            v["status"] = "failed to start" if v.get("error") else "failed"
    return out


def select_variants(env_var: str, every: dict, groups, covers: Callable, choices: str,
                    spec: str | None = None) -> dict:
    """The variants of ``every`` named, comma-separated, in ``env_var`` (or in ``spec``): a name is a variant, or
    one of ``groups``, which selects each variant ``covers(variant, every[variant], name)``; none named: all. An
    unknown name stops the run and says what ``choices`` there are."""
    spec = os.environ.get(env_var, "") if spec is None else spec
    names = [n.strip() for n in spec.split(",") if n.strip()]
    unknown = [n for n in names if n not in every and n not in groups]
    if unknown:
        raise SystemExit(f"{env_var}: unknown {', '.join(unknown)}; choose from {choices}")
    if not names:
        return every
    return {v: value for v, value in every.items() if any(v == n or covers(v, value, n) for n in names)}


def default_cases(ctx: Context, app: str, variants: list[str] | None = None, **kw) -> list[Case]:
    return [Case(server=srv, variant=v, app=app, **kw) for v in (variants or ["-"]) for srv in ctx.settings.servers]


def wrk_measure(path: str = "/", script: str | None = None, connections: int | None = None,
                duration_scale: float = 1.0):
    """A measure function: warm up, then one wrk run of the scenario's duration."""

    def measure(ctx: Context, case: Case, server: RunningServer):
        s = ctx.settings
        warm(ctx, server, path, script, connections)
        w = Wrk(s.wrk, server.port, path, connections=connections or s.connections,
                duration=s.duration * duration_scale, cpus=s.client_cpus, script=script)
        (u0, s0), x0, t0 = cpu_times(server.pid), context_switches(server.pid), time.monotonic()
        metrics = w.run().metrics()
        (u1, s1), x1, wall = cpu_times(server.pid), context_switches(server.pid), time.monotonic() - t0
        # Server CPU use during the run: ~100% per pinned core means the server, not wrk, was the limit.
        cpu_pct = (u1 - u0 + s1 - s0) / wall * 100
        metrics["server_cpu_pct"] = round(cpu_pct)
        # What a request costs the server, whatever the machine's speed lets it reach: CPU per request, split.
        n = metrics["rps"] * wall
        if n > 0:
            metrics["user_us_per_req"] = round((u1 - u0) / n * 1e6, 1)
            metrics["sys_us_per_req"] = round((s1 - s0) / n * 1e6, 1)
            metrics["cpu_us_per_req"] = round((u1 - u0 + s1 - s0) / n * 1e6, 1)
        metrics["ctx_switches_per_s"] = round((x1 - x0) / wall)
        # Requests per second of server CPU time: less sensitive than req/s to other work on a shared machine.
        metrics["rps_per_core"] = round(metrics["rps"] * 100 / cpu_pct, 1) if cpu_pct > 1 else None
        return metrics, [w.command]

    return measure
