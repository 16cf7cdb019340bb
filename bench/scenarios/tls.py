"""10. TLS: the plaintext load (GET, 13-byte body, 64 keep-alive connections) over HTTPS, next to the same load
over plain HTTP in the same run, so the cost of TLS is a ratio from one machine state — requests/s, p50, p99,
server CPU per request. And what a new connection costs: the ``https-new-conn`` rows.

wrk speaks HTTPS itself (OpenSSL; one handshake per connection, then keep-alive), so the load generator is the
plaintext scenario's. The certificate is a throwaway self-signed P-256 one made with the openssl command (wrk
does not verify it); every server gets the same one.

``https-new-conn``: one connection per request (``bench.tlsclient --mode close``: a full TLS 1.3 handshake, no
session resumed, one GET with ``Connection: close``, one client, one at a time, for the round's duration). Its
number is the server's CPU per new connection (handshake, request, close); its req/s is the Python client's pace,
not the server's limit, so its ratios say little.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.scenarios import Case, Context, Scenario, run_cases
from bench.servers import cpu_seconds
from bench.wrk import Wrk

NEW_CONN = "https-new-conn"

APP = "bench.apps.plaintext:app"
# Each server's names for its certificate options.
CERT_FLAGS = {
    "hybrid": "--ssl-certfile {cert} --ssl-keyfile {key}",
    "uvicorn": "--ssl-certfile {cert} --ssl-keyfile {key}",
    "granian": "--ssl-certificate {cert} --ssl-keyfile {key}",
    "hypercorn": "--certfile {cert} --keyfile {key}",
}


def make_certificate(folder: Path) -> tuple[str, str]:
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1"],
        check=True, capture_output=True,
    )
    return str(cert), str(key)


def measure(ctx: Context, case: Case, server):
    if case.variant == NEW_CONN:
        return measure_new_connections(ctx, server)
    s = ctx.settings
    scheme = "https" if case.tls else "http"
    if s.warmup > 0:
        Wrk(s.wrk, server.port, "/", connections=s.connections, duration=s.warmup, cpus=s.client_cpus,
            scheme=scheme).run()
    w = Wrk(s.wrk, server.port, "/", connections=s.connections, duration=s.duration, cpus=s.client_cpus,
            scheme=scheme)
    c0, t0 = cpu_seconds(server.pid), time.monotonic()
    metrics = w.run().metrics()
    cpu_pct = (cpu_seconds(server.pid) - c0) / (time.monotonic() - t0) * 100
    metrics["server_cpu_pct"] = round(cpu_pct)
    metrics["rps_per_core"] = round(metrics["rps"] * 100 / cpu_pct, 1) if cpu_pct > 1 else None
    if metrics["rps"]:
        metrics["cpu_us_per_req"] = round(cpu_pct / 100 / metrics["rps"] * 1e6, 1)
    return metrics, [w.command]


def measure_new_connections(ctx: Context, server):
    """Server CPU per new HTTPS connection: a handshake, one request, the close."""
    s = ctx.settings
    argv = (["taskset", "-c", s.client_cpus] if s.client_cpus else []) + [
        sys.executable, "-m", "bench.tlsclient", str(server.port), "100000000", "--mode", "close",
        "--duration", str(s.duration), "--timeout", "10"]
    c0, t0 = cpu_seconds(server.pid), time.monotonic()
    out = subprocess.run(argv, capture_output=True, text=True, timeout=s.duration + 60, check=True)
    cpu, wall = cpu_seconds(server.pid) - c0, time.monotonic() - t0
    done = json.loads(out.stdout)["connections"]
    metrics = {"rps": round(done / wall, 1), "server_cpu_pct": round(cpu / wall * 100), "errors": 0,
               "connections": done}
    if done:
        metrics["cpu_us_per_conn"] = round(cpu / done * 1e6, 1)
    return metrics, [" ".join(argv)]


def run(ctx: Context) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="bench-tls-"))
    cert, key = make_certificate(folder)
    cases = []
    for variant in ("http", "https", NEW_CONN):
        for srv in ctx.settings.servers:
            tls = variant != "http"
            extra = CERT_FLAGS[srv].format(cert=cert, key=key) if tls else ""
            cases.append(Case(server=srv, variant=variant, app=APP, extra=extra, tls=tls))
    return {
        "params": {"app": APP, "connections": ctx.settings.connections, "path": "/",
                   "certificate": "self-signed ECDSA P-256 (openssl req)"},
        "cases": run_cases(ctx, "tls", cases, measure),
    }


SCENARIO = Scenario(
    name="tls",
    title="TLS: the plaintext load over HTTPS and over HTTP, 64 keep-alive connections; CPU per new HTTPS connection",
    measures=["rps", "p50_ms", "p99_ms", "cpu_us_per_req", "cpu_us_per_conn", "rps_per_core"],
    primary="rps",
    higher_is_better=True,
    run=run,
    in_quick=False,
)
