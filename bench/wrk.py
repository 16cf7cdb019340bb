"""Driving wrk: a generated Lua script sets the request and prints the summary as one JSON line."""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.servers import HOST


# A deterministic JSON document of exactly 1024 bytes for the json and framework scenarios.
def _make_body(size: int = 1024) -> bytes:
    items = [{"k": i, "name": f"item-{i}", "tags": ["a", "b"]} for i in range(12)]
    doc = {"id": 42, "name": "bench", "items": items, "pad": ""}
    raw = json.dumps(doc, separators=(",", ":")).encode()
    doc["pad"] = "x" * (size - len(raw))
    raw = json.dumps(doc, separators=(",", ":")).encode()
    assert len(raw) == size, len(raw)
    return raw


JSON_BODY = _make_body()

_DONE = r'''
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect_errors":%d,"read_errors":%d,' ..
    '"write_errors":%d,"status_errors":%d,"timeouts":%d,"mean_us":%.1f,"max_us":%d,' ..
    '"p50_us":%d,"p90_us":%d,"p99_us":%d,"p999_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency:percentile(99.9)))
end
'''


def lua_script(method: str = "GET", body: bytes | None = None, content_type: str | None = None) -> str:
    lines = [f'wrk.method = "{method}"']
    if body is not None:
        text = body.decode()
        assert "]==]" not in text
        lines.append(f"wrk.body = [==[{text}]==]")
    if content_type:
        lines.append(f'wrk.headers["Content-Type"] = "{content_type}"')
    return "\n".join(lines) + "\n" + _DONE


@dataclass
class WrkResult:
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    max_ms: float
    requests: int
    errors: int
    non_2xx: int
    timeouts: int
    raw: dict

    def metrics(self, prefix: str = "") -> dict:
        return {
            f"{prefix}rps": round(self.rps, 1),
            f"{prefix}p50_ms": round(self.p50_ms, 3),
            f"{prefix}p99_ms": round(self.p99_ms, 3),
            f"{prefix}p999_ms": round(self.p999_ms, 3),
            f"{prefix}errors": self.errors + self.non_2xx,
        }


def parse(output: str) -> WrkResult:
    m = re.search(r"^WRKJSON (\{.*\})$", output, re.M)
    if not m:
        raise RuntimeError(f"wrk printed no summary:\n{output[-800:]}")
    d = json.loads(m.group(1))
    secs = max(d["duration_us"], 1) / 1e6
    errors = d["connect_errors"] + d["read_errors"] + d["write_errors"] + d["timeouts"]
    return WrkResult(
        rps=d["requests"] / secs,
        p50_ms=d["p50_us"] / 1000, p90_ms=d["p90_us"] / 1000, p99_ms=d["p99_us"] / 1000,
        p999_ms=d["p999_us"] / 1000, max_ms=d["max_us"] / 1000,
        requests=d["requests"], errors=errors, non_2xx=d["status_errors"], timeouts=d["timeouts"], raw=d,
    )


class Wrk:
    """One wrk invocation, pinned to the client cores; start() + wait() lets two run side by side."""

    def __init__(self, wrk_path: str, port: int, path: str, *, connections: int, duration: float,
                 cpus: str | None, threads: int = 1, script: str | None = None, timeout_s: int = 30,
                 scheme: str = "http"):
        self._tmp = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
        self._tmp.write(script or lua_script())
        self._tmp.close()
        secs = max(1, round(duration))
        self.argv = (["taskset", "-c", cpus] if cpus else []) + [
            wrk_path, f"-t{threads}", f"-c{connections}", f"-d{secs}s", f"--timeout={timeout_s}s",
            "--latency", "-s", self._tmp.name, f"{scheme}://{HOST}:{port}{path}",
        ]
        self.duration = secs
        self.proc: subprocess.Popen | None = None

    @property
    def command(self) -> str:
        return " ".join(self.argv[:-3] + ["SCRIPT.lua", self.argv[-1]])

    def start(self) -> Wrk:
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        return self

    def wait(self) -> WrkResult:
        assert self.proc is not None
        try:
            out, _ = self.proc.communicate(timeout=self.duration + 60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        finally:
            Path(self._tmp.name).unlink(missing_ok=True)
        return parse(out)

    def run(self) -> WrkResult:
        return self.start().wait()
