"""Instructions per request of a REAL hybrid server process, over TLS or plain HTTP, counted by callgrind.

The server runs under ``valgrind --tool=callgrind`` twice: once serving N requests from ``bench.tlsclient``,
once 2N; (instructions at 2N - at N) / N cancels startup and shutdown. Wall-clock numbers on a loaded machine
mean nothing; instruction counts do.

usage: python -m bench.callgrind_tls [--n 2000] [--plain] [--mode keepalive|close] [--connections 4] [--keep DIR]
Prints one JSON object; with --keep the callgrind files stay in DIR (for callgrind_annotate).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.procs import free_port, stop, wait_listening
from bench.scenarios.tls import make_certificate
from bench.tlsclient import run as run_client

APP = "bench.apps.plaintext:app"
READY_TIMEOUT = 240.0  # the server imports everything under valgrind: slow


def _total(path: Path) -> int:
    for line in path.read_text().splitlines():
        m = re.match(r"(?:summary|totals):\s+(\d+)", line)
        if m:
            return int(m.group(1))
    raise RuntimeError(f"no totals in {path}")


def count(n: int, folder: Path, cert: str, key: str, *, plain: bool, mode: str, connections: int,
          extra: list[str]) -> int:
    port = free_port()
    out = folder / f"callgrind.{'plain' if plain else 'tls'}.{mode}.{n}"
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-m", "hybrid", APP,
           "--host", "127.0.0.1", "--port", str(port), "--no-access-log", *extra]
    if not plain:
        cmd += ["--ssl-certfile", cert, "--ssl-keyfile", key]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONHASHSEED": "0"})
    try:
        wait_listening(proc, port, READY_TIMEOUT, interval=0.5)
        run_client(port, n, connections, mode, plain, timeout=60.0)
    finally:
        stop(proc, READY_TIMEOUT)  # (SIGINT: callgrind writes its counts as the server exits)
    return _total(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--plain", action="store_true")
    p.add_argument("--mode", choices=("keepalive", "close"), default="keepalive")
    p.add_argument("--connections", type=int, default=4)
    p.add_argument("--keep", type=Path, default=None, help="folder to keep the callgrind output files in")
    p.add_argument("extra", nargs="*", help="more hybrid options (after --)")
    a = p.parse_args(argv)
    folder = a.keep or Path(tempfile.mkdtemp(prefix="callgrind-tls-"))
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = make_certificate(folder)
    kw = dict(plain=a.plain, mode=a.mode, connections=a.connections, extra=a.extra)
    one = count(a.n, folder, cert, key, **kw)
    two = count(2 * a.n, folder, cert, key, **kw)
    print(json.dumps({"variant": "plain" if a.plain else "tls", "mode": a.mode, "n": a.n,
                      "instructions_per_request": round((two - one) / a.n), "at_n": one, "at_2n": two}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
