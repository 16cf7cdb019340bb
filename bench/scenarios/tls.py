"""10. TLS: the plaintext load (GET, 13-byte body, 64 keep-alive connections) over HTTPS, next to the same load
over plain HTTP in the same run, so the cost of TLS is a ratio from one machine state — requests/s, p50, p99.

wrk speaks HTTPS itself (OpenSSL; one handshake per connection, then keep-alive), so the load generator is the
plaintext scenario's. The certificate is a throwaway self-signed P-256 one made with the openssl command (wrk
does not verify it); every server gets the same one.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

from bench.scenarios import Case, Context, Scenario, run_cases
from bench.servers import cpu_seconds
from bench.wrk import Wrk

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
    return metrics, [w.command]


def run(ctx: Context) -> dict:
    folder = Path(tempfile.mkdtemp(prefix="bench-tls-"))
    cert, key = make_certificate(folder)
    cases = []
    for variant in ("http", "https"):
        for srv in ctx.settings.servers:
            tls = variant == "https"
            extra = CERT_FLAGS[srv].format(cert=cert, key=key) if tls else ""
            cases.append(Case(server=srv, variant=variant, app=APP, extra=extra, tls=tls))
    return {
        "params": {"app": APP, "connections": ctx.settings.connections, "path": "/",
                   "certificate": "self-signed ECDSA P-256 (openssl req)"},
        "cases": run_cases(ctx, "tls", cases, measure),
    }


SCENARIO = Scenario(
    name="tls",
    title="TLS: the plaintext load over HTTPS and over HTTP, 64 keep-alive connections",
    measures=["rps", "p50_ms", "p99_ms", "rps_per_core"],
    primary="rps",
    higher_is_better=True,
    run=run,
    in_quick=False,
)
