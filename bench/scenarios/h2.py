"""HTTP/2 (issue 26): h2load (Debian's nghttp2-client, bench/h2load.py) against hybrid, granian and hypercorn
(uvicorn has no HTTP/2), every combination of

- transport: ``h2c`` (prior knowledge on the plain port) or ``tls`` (HTTPS, ALPN ``h2``; the tls scenario's
  self-signed P-256 certificate and each server's certificate options, its CERT_FLAGS);
- app: the plaintext app (GET, 13-byte body) or the json scenario's (POST of its 1 KB JSON body, parsed, small
  JSON answer; variant names start with ``json-``);
- shape: ``8x8`` (8 connections x 8 concurrent streams) or ``1x100`` (1 connection x 100 streams).

Variants read ``h2c-8x8``, ``tls-1x100``, ``json-h2c-8x8``, ``json-tls-1x100``... Servers: hybrid as it is (its
default ``--http auto`` serves h2c and ALPN h2), granian ``--http auto`` (h2c and ALPN h2; ``--http 2`` would not
answer the HTTP/1.1 readiness probe), hypercorn with its default protocols (h2c prior knowledge and ALPN h2) and
no limit on requests per connection (EXTRA).

Measures req/s, p50 and p99 of the request times (from h2load's per-request log), errors (failed requests, shown,
never dropped), and the server's CPU microseconds per answered request (from /proc), the number to compare with
the same server's HTTP/1.1 cost. A run over TLS that did not negotiate h2 fails its round.

``BENCH_H2_VARIANTS=tls,json-h2c-8x8`` (comma-separated: a whole variant name, or one value of an axis: ``h2c``,
``tls``, ``plaintext``, ``json``, ``8x8``, ``1x100``, which selects every variant with it) runs only those, for a
quicker look; unset, all eight run.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from bench.h2load import H2Load
from bench.scenarios import Case, Context, Scenario, run_cases, select_variants
from bench.scenarios.tls import CERT_FLAGS, make_certificate
from bench.servers import cpu_seconds
from bench.wrk import JSON_BODY

APPS = {"plaintext": "bench.apps.plaintext:app", "json": "bench.apps.json_echo:app"}
TRANSPORTS = ("h2c", "tls")
SHAPES = {"8x8": (8, 8), "1x100": (1, 100)}  # connections, streams per connection
# What makes each server offer HTTP/2 (bench/servers.py's granian template says --http 1; the later flag wins).
# hypercorn closes a connection after 1,000 requests (its keep_alive_max_requests; GOAWAY on h2), and h2load does
# not reconnect: each connection would stop there, a few hundred ms into the run (the issue's "7,944 of 30,000
# requests"). Its config file ({folder}/hypercorn.toml, made by run) lifts that limit, as the idle scenario lifts
# every server's keep-alive timeout.
EXTRA = {"granian": "--http auto", "hypercorn": "--config {folder}/hypercorn.toml", "hybrid": ""}
HYPERCORN_TOML = "keep_alive_max_requests = 1_000_000_000\n"


def variant_name(app: str, transport: str, shape: str) -> str:
    return f"{'json-' if app == 'json' else ''}{transport}-{shape}"


def every_variant() -> dict[str, tuple[str, str, str]]:
    """Variant name -> (app, transport, shape), in run order: h2c before TLS, plaintext before JSON."""
    return {variant_name(app, t, shape): (app, t, shape) for t in TRANSPORTS for app in APPS for shape in SHAPES}


def selected_variants(spec: str | None = None) -> dict[str, tuple[str, str, str]]:
    """The variants BENCH_H2_VARIANTS names (all when it is unset or empty)."""
    every = every_variant()
    axes = {*APPS, *TRANSPORTS, *SHAPES}
    return select_variants("BENCH_H2_VARIANTS", every, axes, lambda _v, axes_, name: name in axes_,
                           f"{', '.join(every)} or an axis: {', '.join(sorted(axes))}", spec)


def cases_for(servers: list[str], folder: str, cert: str, key: str,
              variants: dict[str, tuple[str, str, str]]) -> list[Case]:
    cases = []
    for variant, (app, transport, _shape) in variants.items():
        for srv in servers:
            tls = transport == "tls"
            extra = " ".join(x for x in (EXTRA[srv].format(folder=folder),
                                         CERT_FLAGS[srv].format(cert=cert, key=key) if tls else "") if x)
            cases.append(Case(server=srv, variant=variant, app=APPS[app], extra=extra, tls=tls))
    return cases


def load_for(case: Case, port: int, duration: float, cpus: str | None, body: str) -> H2Load:
    app, transport, shape = every_variant()[case.variant]
    connections, streams = SHAPES[shape]
    return H2Load(port, connections, streams, duration, tls=transport == "tls", cpus=cpus,
                  data=body if app == "json" else None)


def make_measure(body: str):
    def measure(ctx: Context, case: Case, server):
        s = ctx.settings
        if s.warmup > 0:  # (also takes a fresh server's first-connection costs out of the measurement)
            load_for(case, server.port, s.warmup, s.client_cpus, body).run()
        h2 = load_for(case, server.port, s.duration, s.client_cpus, body)
        c0, t0 = cpu_seconds(server.pid), time.monotonic()
        metrics = h2.run()
        used, wall = cpu_seconds(server.pid) - c0, time.monotonic() - t0
        metrics["server_cpu_pct"] = round(used / wall * 100)
        # (per request answered: a server that fails requests does not look cheaper for it)
        metrics["cpu_us_per_req"] = round(used * 1e6 / metrics["ok"], 1) if metrics["ok"] else None
        return metrics, [h2.command]

    return measure


def run(ctx: Context) -> dict:
    if shutil.which("h2load") is None:
        return {"params": {"skipped": "h2load not installed (apt-get install nghttp2-client)"}, "cases": {}}
    variants = selected_variants()
    folder = Path(tempfile.mkdtemp(prefix="bench-h2-"))
    cert, key = make_certificate(folder)
    body = folder / "body.json"
    body.write_bytes(JSON_BODY)
    (folder / "hypercorn.toml").write_text(HYPERCORN_TOML)
    servers = [srv for srv in ctx.settings.servers if srv in EXTRA]
    try:
        cases = run_cases(ctx, "h2", cases_for(servers, str(folder), cert, key, variants), make_measure(str(body)))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "params": {"apps": APPS, "shapes": SHAPES, "variants": list(variants), "body_bytes": len(JSON_BODY),
                   "hypercorn.toml": HYPERCORN_TOML.strip(),
                   "load": "h2load -t 1: h2c prior knowledge, or HTTPS with ALPN h2",
                   "certificate": "self-signed ECDSA P-256 (openssl req)"},
        "cases": cases,
    }


def upgrade(result: dict) -> None:
    """A result from before the TLS and JSON variants (h2c and the plaintext app only, variants ``8x8`` and
    ``1x100``, CPU as ``cpu_us_per_request``, h2load's mean and max for want of percentiles) under today's names:
    its p50 and p99 stay empty."""
    if not any(c.get("variant") in SHAPES for c in result.get("cases", {}).values()):
        return
    result.setdefault("params", {})["note"] = (
        "Measured before the TLS and JSON variants: no p50 and p99 (h2load's mean and max request times are in the "
        "results file), and hypercorn then closed each connection after 1,000 requests, which h2load does not "
        "replace: its rows count what those connections served.")
    cases = {}
    for key, case in result.get("cases", {}).items():
        if case.get("variant") in SHAPES:
            case["variant"] = f"h2c-{case['variant']}"
            key = f"{case['server']}/{case['variant']}"
            for numbers in (case.get("summary", {}), *case.get("rounds", [])):
                if "cpu_us_per_request" in numbers:
                    numbers["cpu_us_per_req"] = numbers.pop("cpu_us_per_request")
        cases[key] = case
    result["cases"] = cases


SCENARIO = Scenario(
    name="h2",
    title="HTTP/2: h2load over h2c and TLS (ALPN h2), plaintext GET and JSON POST, 8 connections x 8 streams and "
          "1 connection x 100 streams",
    measures=["rps", "p50_ms", "p99_ms", "cpu_us_per_req", "server_cpu_pct"],
    primary="rps",
    higher_is_better=True,
    run=run,
    in_quick=False,
    versus=("granian", "hypercorn"),
    upgrade=upgrade,
)
