"""The servers under test: one entry per server in SERVERS, and how to start, probe and stop one.

A template is formatted with {python} (the interpreter that has the server installed), {bin} (that venv's bin/),
{app}, {host}, {port}. ``workers`` is appended only for --workers > 1 (every server here defaults to one process, so
--workers 1 and no flag are the same thing, and a server that lacks the flag still runs the one-process scenarios).
``idle_args`` is appended in the idle-connections scenario so that no server closes idle connections while they
are counted (their defaults range from 5 s to none).
"""

from __future__ import annotations

import os
import re
import resource
import shlex
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from bench import env
from bench.procs import HOST, free_port


@dataclass(frozen=True)
class ServerSpec:
    name: str
    command: str
    workers: str
    idle_args: str
    venv: str  # "hybrid" (the repo's .venv) or "peers" (bench/.venv-peers)
    note: str = ""


SERVERS: dict[str, ServerSpec] = {
    s.name: s
    for s in (
        ServerSpec(
            "hybrid",
            "{python} -m hybrid {app} --host {host} --port {port} --no-access-log",
            "--workers {workers}",
            "--timeout-keep-alive 120",
            "hybrid",
            "default threads",
        ),
        ServerSpec(
            "uvicorn",
            "{bin}/uvicorn {app} --host {host} --port {port} --loop uvloop --http httptools"
            " --no-access-log --log-level warning",
            "--workers {workers}",
            "--timeout-keep-alive 120",
            "peers",
            "uvloop + httptools",
        ),
        ServerSpec(
            "granian",
            "{bin}/granian --interface asgi --host {host} --port {port} --http 1 --loop uvloop"
            " --no-access-log --log-level warning {app}",
            "--workers {workers}",
            "--backpressure 16384",  # no keep-alive timeout flag; its 30 s header-read timeout is not reached
            "peers",
            "HTTP/1 only, uvloop",
        ),
        ServerSpec(
            "hypercorn",
            "{bin}/hypercorn --bind {host}:{port} --worker-class uvloop --log-level warning {app}",
            "--workers {workers}",
            "--keep-alive 120",
            "peers",
            "uvloop worker class",
        ),
    )
}


class ServerFailed(Exception):
    def __init__(self, message: str, unsupported: bool = False):
        super().__init__(message)
        self.unsupported = unsupported


def build_argv(spec: ServerSpec, app: str, port: int, workers: int = 1, extra: str = "") -> list[str]:
    if spec.venv == "hybrid":
        python = env.hybrid_python()
        binpath = str(Path(python).parent)
    else:
        python = str(env.peers_python())
        binpath = str(env.PEERS_VENV / "bin")
    fields = {"python": python, "bin": binpath, "app": app, "host": HOST, "port": port, "workers": workers}
    text = spec.command
    if workers != 1:
        text += " " + spec.workers
    if extra:
        text += " " + extra
    return shlex.split(text.format(**fields))


def _raise_nofile() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def children_of(pid: int) -> list[int]:
    """All descendants of pid, from /proc (no psutil)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def rss_kb(pid: int) -> int:
    """VmRSS of pid and all its descendants, in KiB."""
    total = 0
    for p in [pid] + children_of(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def cpu_times(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of pid and its descendants (granian's worker is a child process)."""
    user = system = 0
    for p in [pid] + children_of(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            user += int(fields[11])
            system += int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    tick = os.sysconf("SC_CLK_TCK")
    return user / tick, system / tick


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of pid and its descendants, in seconds."""
    return sum(cpu_times(pid))


def context_switches(pid: int) -> int:
    """Voluntary + involuntary context switches of every thread of pid and its descendants, so far (threads that
    already ended are not counted: the servers' threads live as long as the run)."""
    total = 0
    for p in [pid] + children_of(pid):
        try:
            tids = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                for line in Path(f"/proc/{p}/task/{tid}/status").read_text().splitlines():
                    if line.startswith(("voluntary_ctxt_switches:", "nonvoluntary_ctxt_switches:")):
                        total += int(line.split()[1])
            except (OSError, ValueError):
                pass
    return total


HYBRID_STATS = re.compile(r"Served (\d+) requests; (\d+) takeovers of blocked threads .*?the monitor woke (\d+) times")


def hybrid_stats(log_text: str) -> dict:
    """What hybrid's shutdown line says about a whole run (warm-up included): takeovers, monitor wake-ups/s."""
    found = HYBRID_STATS.findall(log_text)
    if not found:
        return {}
    return {"takeovers": sum(int(t) for _, t, _ in found), "monitor_wakeups_per_s": max(int(w) for _, _, w in found)}


def http_probe(port: int, timeout: float = 2.0, tls: bool = False) -> bool:
    """True once the server answers an HTTP request with a status line (any status); over TLS with ``tls``
    (the bench's self-signed certificate is not verified)."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as raw:
            s = raw
            if tls:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
                s = ctx.wrap_socket(raw)
            s.sendall(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            return s.recv(16).startswith(b"HTTP/1.")
    except OSError:
        return False


USAGE_MARKERS = (
    "unrecognized arguments", "no such option", "usage:", "unknown option", "invalid choice", "error: argument",
)


class RunningServer:
    def __init__(self, spec: ServerSpec, app: str, *, workers: int, cpus: str | None, log_path: Path,
                 extra: str = "", tls: bool = False):
        self.spec = spec
        self.port = free_port()
        self.argv = build_argv(spec, app, self.port, workers, extra)
        self.tls = tls
        self.full_argv = (["taskset", "-c", cpus] if cpus else []) + self.argv
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    @property
    def command(self) -> str:
        return shlex.join(self.full_argv)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def _log_tail(self, n: int = 12) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-n:])

    def start(self, ready_timeout: float = 30.0) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        environ = dict(os.environ)
        environ["PYTHONPATH"] = str(env.REPO_ROOT) + os.pathsep + environ.get("PYTHONPATH", "")
        environ.pop("VIRTUAL_ENV", None)
        logf = open(self.log_path, "wb")
        try:
            self.proc = subprocess.Popen(
                self.full_argv, cwd=env.REPO_ROOT, env=environ, stdin=subprocess.DEVNULL,
                stdout=logf, stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=_raise_nofile,
            )
        finally:
            logf.close()
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            code = self.proc.poll()
            if code is not None:
                tail = self._log_tail()
                unsupported = code == 2 or any(m in tail.lower() for m in USAGE_MARKERS)
                last = next((ln for ln in reversed(tail.splitlines()) if ln.strip()), "")
                raise ServerFailed(f"exited with code {code}: {last.strip()[:300]}", unsupported=unsupported)
            if http_probe(self.port, timeout=1.0, tls=self.tls):
                return
            time.sleep(0.1)
        self.stop()
        raise ServerFailed(f"did not answer within {ready_timeout:.0f} s: {self._log_tail()[-600:]}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, grace: float = 5.0) -> None:
        if self.proc is None:
            return
        family = children_of(self.proc.pid)
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for pid in family:  # workers that outlived their parent, by PID only
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.proc = None
