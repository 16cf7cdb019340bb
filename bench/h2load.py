"""One h2load run (Debian's nghttp2-client): its command line, and what its output and its ``--log-file`` say.

h2load prints no percentiles, only min, max, mean and sd of its request times; its ``--log-file`` has one
tab-separated line per request (start time in µs since the epoch, status code or -1 for a failed stream, µs until
the end of the response), from which p50 and p99 are computed here. Over TLS it offers ``h2`` and ``http/1.1``
by ALPN, as a browser does, and says which one the server chose: a run that did not speak HTTP/2 is an error,
not a row (``protocol_of``).

Errors are every request h2load counted as failed (a reset stream, a connection lost, a 4xx or 5xx answer) plus
any 3xx: the bench apps answer 200 to every request. Streams still in flight when a timed run stops are not
errors (h2load counts them as started, not done).
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from dataclasses import dataclass

from bench.procs import HOST
from bench.stats import percentile

_FINISHED = re.compile(r"finished in [^,]+, ([\d.]+) req/s")
_REQUESTS = re.compile(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                       r"(\d+) errored, (\d+) timeout")
_STATUS = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")
_PROTOCOL = re.compile(r"^Application protocol: (\S+)", re.M)
_TLS = re.compile(r"^TLS Protocol: (\S+)", re.M)


@dataclass
class H2Load:
    port: int
    connections: int
    streams: int  # concurrent streams on each connection (-m)
    duration: float  # seconds (h2load -D takes whole seconds)
    tls: bool = False
    requests: int | None = None  # a count of requests (-n) instead of a duration (bench/h2_cost.py)
    data: str | None = None  # a file posted as each request's body (-d), with content_type
    content_type: str = "application/json"
    cpus: str | None = None
    path: str = "/"

    def argv(self, log_file: str | None = None) -> list[str]:
        amount = ["-n", str(self.requests)] if self.requests else ["-D", str(max(1, round(self.duration)))]
        argv = ["h2load", *amount, "-c", str(self.connections), "-m", str(self.streams), "-t", "1"]
        if self.data:
            argv += ["-d", self.data, "-H", f"content-type: {self.content_type}"]
        if log_file:
            argv += ["--log-file", log_file]
        argv.append(f"{'https' if self.tls else 'http'}://{HOST}:{self.port}{self.path}")
        return (["taskset", "-c", self.cpus] if self.cpus else []) + argv

    @property
    def command(self) -> str:
        return " ".join(self.argv("LOG.tsv"))

    def run(self, timeout: float | None = None) -> dict:
        """Run it; the metrics of ``parse`` and of ``log_percentiles``. Raises if the run did not speak h2."""
        fd, log_file = tempfile.mkstemp(prefix="h2load-", suffix=".tsv")
        os.close(fd)
        try:
            out = subprocess.run(self.argv(log_file), capture_output=True, text=True,
                                 timeout=timeout or self.duration + 60).stdout
            metrics = parse(out)
            expected = "h2" if self.tls else "h2c"
            if metrics.get("protocol") != expected:
                raise RuntimeError(f"h2load negotiated {metrics.get('protocol') or 'nothing'}, not {expected}:\n"
                                   f"{out[-600:]}")
            with open(log_file) as f:
                metrics.update(log_percentiles(f))
        finally:
            os.unlink(log_file)
        return metrics


def parse(out: str) -> dict:
    """req/s, requests done, answered with a 2xx, errors, and the protocol (and TLS version) h2load spoke."""
    m = _REQUESTS.search(out)
    if not m:
        raise RuntimeError(f"h2load printed no request counts:\n{out[-600:]}")
    _total, started, done, succeeded, failed, errored, timeout = (int(x) for x in m.groups())
    s = _STATUS.search(out)  # (counted at each response's head: streams cut off by the end of a run are in it)
    redirects = int(s.group(2)) if s else 0
    r = _FINISHED.search(out)
    # succeeded: streams that ended well with a 2xx or a 3xx status
    metrics: dict = {"rps": float(r.group(1)) if r else 0.0, "done": done, "ok": succeeded - redirects,
                     "errors": failed + redirects, "errored": errored, "timeouts": timeout,
                     "unfinished": started - done}
    p = _PROTOCOL.search(out)
    if p:
        metrics["protocol"] = p.group(1)
    t = _TLS.search(out)
    if t:
        metrics["tls"] = t.group(1)
    return metrics


def log_percentiles(lines) -> dict:
    """p50, p99 and max request times in ms over the requests answered with a 2xx, from h2load's --log-file
    (failed streams, status -1, and error statuses are errors: counted by ``parse``, not timed here)."""
    times = []
    for line in lines:
        fields = line.split("\t")
        if len(fields) >= 3 and 200 <= int(fields[1]) < 300:
            times.append(int(fields[2]) / 1000)
    times.sort()
    if not times:
        return {"logged": 0}
    return {"logged": len(times), "p50_ms": round(percentile(times, 50), 3), "p99_ms": round(percentile(times, 99), 3),
            "max_ms": round(times[-1], 3)}
