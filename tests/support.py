"""Helpers shared by the test modules: start/stop real hybrid server processes, raw HTTP/1.1 clients.

Servers are started as ``sys.executable -m hybrid MODULE:APP`` with cwd = the repository root, so test apps
are addressed as ``tests.apps.NAME:app``. A server is stopped by its PID only: SIGTERM, then SIGKILL
after 10 s.
"""

from __future__ import annotations

import atexit
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"

LISTEN_RE = re.compile(r"Listening on (?:https?://(?P<hostport>\S+)|unix:(?P<uds>\S+)|fd (?P<fd>\d+))")

READY_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0


def parse_hostport(hostport: str) -> tuple[str, int]:
    hostport = hostport.rstrip("/")
    host, _, port = hostport.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


_STARTED: list[Server] = []


@atexit.register
def _stop_leftovers() -> None:  # a crashed test run must not leave servers behind
    for srv in _STARTED:
        if srv.alive():
            try:
                os.kill(srv.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


class ServerError(AssertionError):
    pass


class Server:
    """One hybrid server process. Use as a context manager or call start()/stop()."""

    def __init__(self, *args: str, env: dict | None = None, pass_fds=(), ready: bool = True, cwd=REPO):
        self.args = [str(a) for a in args]
        self.env = dict(os.environ)
        self.env["PYTHONUNBUFFERED"] = "1"
        if env:
            self.env.update(env)
        self.pass_fds = tuple(pass_fds)
        self.wait_ready = ready
        self.cwd = cwd
        self.proc: subprocess.Popen | None = None
        self.lines: list[str] = []
        self.line_times: list[float] = []
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._eof = threading.Event()
        self.host: str | None = None
        self.port: int | None = None
        self.uds: str | None = None
        self.fd: int | None = None
        self.returncode: int | None = None

    # -- lifecycle -------------------------------------------------------------------------------------
    @property
    def cmd(self) -> list[str]:
        return [sys.executable, "-m", "hybrid", *self.args]

    def start(self, timeout: float = READY_TIMEOUT) -> Server:
        self.proc = subprocess.Popen(
            self.cmd,
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            pass_fds=self.pass_fds,
            start_new_session=True,
        )
        _STARTED.append(self)
        t = threading.Thread(target=self._drain, daemon=True)
        t.start()
        if self.wait_ready:
            self.wait_for_ready(timeout)
        return self

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace")
            with self._lock:
                self.lines.append(line)
                self.line_times.append(time.monotonic())  # when each line arrived (tests compare with events)
            m = LISTEN_RE.search(line)
            if m and not self._ready.is_set():
                if m.group("hostport"):
                    self.host, self.port = parse_hostport(m.group("hostport"))
                elif m.group("uds"):
                    self.uds = m.group("uds")
                else:
                    self.fd = int(m.group("fd"))
                self._ready.set()
        self._eof.set()

    def wait_for_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._ready.wait(0.05):
                return
            if self.proc.poll() is not None:
                self._eof.wait(2)
                raise ServerError(f"server exited with {self.proc.returncode} before it was ready:\n{self.output}")
        self.stop()
        raise ServerError(f"server not ready within {timeout} s (no 'Listening on' line):\n{self.output}")

    def line_time(self, text: str, last: bool = False) -> float | None:
        """Monotonic time at which a line containing ``text`` arrived (the first, or the last such line)."""
        with self._lock:
            hits = [t for line, t in zip(self.lines, self.line_times, strict=True) if text in line]
        return (hits[-1] if last else hits[0]) if hits else None

    @property
    def output(self) -> str:
        with self._lock:
            return "".join(self.lines)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.proc.pid, sig)

    def wait(self, timeout: float) -> int | None:
        try:
            self.returncode = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._eof.wait(2)
        return self.returncode

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM the server by PID, SIGKILL it after `timeout` seconds; returns the exit code."""
        if self.proc is None:
            return -1
        if self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.kill(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)
        self.returncode = self.proc.returncode
        self._eof.wait(2)
        return self.returncode

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- convenience -----------------------------------------------------------------------------------
    @property
    def addr(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def connect(self, timeout: float = 5.0) -> RawClient:
        return RawClient(self.addr, timeout=timeout)


def run_cli(*args: str, timeout: float = 15.0, env: dict | None = None) -> tuple[int, str]:
    """Run `python -m hybrid ARGS` expecting it to exit on its own (bad arguments etc.).

    If it is still running after `timeout` it is stopped (SIGTERM/SIGKILL by PID) and the test fails."""
    srv = Server(*args, env=env, ready=False)
    srv.start()
    rc = srv.wait(timeout)
    if rc is None:
        srv.stop()
        raise AssertionError(f"`hybrid {' '.join(args)}` did not exit within {timeout} s; output:\n{srv.output}")
    return rc, srv.output


class ScriptRun:
    """A Python script that serves through ``hybrid.run()`` (with ``port=0``), as a context manager: started in
    its own session with the repository importable, ``port`` read from its "Listening on" line; on exit it is
    stopped by PID (SIGTERM, SIGKILL after 10 s) and ``rc`` and the whole ``output`` are kept."""

    def __init__(self, script: Path, timeout: float = 10.0) -> None:
        self.script, self.timeout = script, timeout
        self.lines: list[str] = []
        self.port: int | None = None
        self.rc: int | None = None

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def __enter__(self) -> ScriptRun:
        env = dict(os.environ, PYTHONPATH=str(REPO), PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen([sys.executable, str(self.script)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + self.timeout
            while time.monotonic() < deadline and self.proc.poll() is None:
                line = self.proc.stdout.readline().decode()
                self.lines.append(line)
                m = LISTEN_RE.search(line)
                if m and m.group("hostport"):
                    self.port = parse_hostport(m.group("hostport"))[1]
                    break
            assert self.port, self.output
        except BaseException:
            self._stop()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._stop()

    def _stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
        try:
            self.rc = self.proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.rc = self.proc.wait(5)
        self.lines.append(self.proc.stdout.read().decode())


# ------------------------------------------------------------------------------------------------------
# A minimal, strict HTTP/1.1 response reader over a raw socket.
# ------------------------------------------------------------------------------------------------------
@dataclass
class Response:
    status: int
    reason: str
    http_version: str
    headers: list[tuple[str, str]]
    body: bytes = b""
    raw_head: bytes = b""
    chunked: bool = False
    trailers: list[tuple[str, str]] = field(default_factory=list)

    def header(self, name: str, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return default

    def header_all(self, name: str) -> list[str]:
        name = name.lower()
        return [v for k, v in self.headers if k == name]


class IncompleteResponse(Exception):
    """The peer closed the connection before a complete response was read."""

    def __init__(self, msg, partial: bytes):
        super().__init__(msg)
        self.partial = partial


class RawClient:
    def __init__(self, addr, timeout: float = 5.0, family=None, sock: socket.socket | None = None):
        if sock is None:
            sock = socket.create_connection(addr, timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock
        self.sock.settimeout(timeout)
        self.buf = b""
        self.eof = False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _more(self) -> bool:
        if self.eof:
            return False
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def read_until(self, delim: bytes) -> bytes:
        while True:
            i = self.buf.find(delim)
            if i >= 0:
                out, self.buf = self.buf[: i + len(delim)], self.buf[i + len(delim) :]
                return out
            if not self._more():
                raise IncompleteResponse(f"connection closed while waiting for {delim!r}", self.buf)

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._more():
                raise IncompleteResponse(f"connection closed with {len(self.buf)}/{n} bytes", self.buf)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_to_eof(self) -> bytes:
        while self._more():
            pass
        out, self.buf = self.buf, b""
        return out

    def read_head(self) -> Response:
        head = self.read_until(b"\r\n\r\n")
        lines = head[:-4].split(b"\r\n")
        version, _, rest = lines[0].partition(b" ")
        code, _, reason = rest.partition(b" ")
        assert version in (b"HTTP/1.1", b"HTTP/1.0"), f"bad status line {lines[0]!r}"
        headers = []
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            assert sep, f"bad header line {line!r}"
            assert name == name.strip() and name, f"bad header name {name!r}"
            headers.append((name.decode("latin-1").lower(), value.strip(b" \t").decode("latin-1")))
        return Response(int(code), reason.decode("latin-1"), version.decode(), headers, raw_head=head)

    def read_response(self, method: str = "GET", skip_informational: bool = False) -> Response:
        while True:
            resp = self.read_head()
            if not (skip_informational and 100 <= resp.status < 200):
                break
        if 100 <= resp.status < 200 or resp.status in (204, 304) or method == "HEAD":
            return resp
        te = resp.header("transfer-encoding")
        cl = resp.header_all("content-length")
        if te is not None:
            # RFC 9112 section 6.3: chunked must be the final coding, or the body would run to the close
            assert [c.strip() for c in te.lower().split(",")][-1] == "chunked", f"unexpected transfer-encoding {te!r}"
            assert not cl, "both content-length and transfer-encoding in response"
            resp.chunked = True
            body = []
            while True:
                line = self.read_until(b"\r\n")
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    break
                body.append(self.read_exact(size))
                assert self.read_exact(2) == b"\r\n", "chunk not followed by CRLF"
            while True:  # trailers
                line = self.read_until(b"\r\n")
                if line == b"\r\n":
                    break
                n, _, v = line[:-2].partition(b":")
                resp.trailers.append((n.decode("latin-1").lower(), v.strip().decode("latin-1")))
            resp.body = b"".join(body)
        elif cl:
            assert len(set(cl)) == 1, f"conflicting content-length {cl}"
            resp.body = self.read_exact(int(cl[0]))
        else:
            resp.body = self.read_to_eof()
        return resp

    def request(
        self, method: str = "GET", target: str = "/", headers=(), body: bytes = b"", version: str = "HTTP/1.1"
    ) -> Response:
        self.send(build_request(method, target, headers, body, version))
        return self.read_response(method)

    def closed_by_peer(self, timeout: float = 3.0) -> bool:
        """True if the peer closes the connection (EOF/RST) within `timeout` and sends nothing more."""
        if self.buf:
            return False
        previous = self.sock.gettimeout()
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
        finally:
            self.sock.settimeout(previous)
        if data:
            self.buf += data
            return False
        self.eof = True
        return True


def build_request(method="GET", target="/", headers=(), body: bytes = b"", version="HTTP/1.1") -> bytes:
    hs = list(headers)
    names = {k.lower() for k, _ in hs}
    if version == "HTTP/1.1" and "host" not in names:
        hs.insert(0, ("Host", "localhost"))
    if body and "content-length" not in names and "transfer-encoding" not in names:
        hs.append(("Content-Length", str(len(body))))
    lines = [f"{method} {target} {version}"] + [f"{k}: {v}" for k, v in hs]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def chunked(*parts: bytes) -> bytes:
    out = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts if p)
    return out + b"0\r\n\r\n"


def free_fds_limit(n: int) -> None:
    """Raise RLIMIT_NOFILE of this process to at least n (if the hard limit allows)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        new = n if hard == resource.RLIM_INFINITY else min(n, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))


def has_ipv6() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def block_a_loop_with_requests_waiting(srv) -> None:
    """With tests.apps.correctness: three requests pending in a worker's loop (``/await?t=0.6``), then one whose step
    blocks that loop after its first await (``/await-then-block?t=0.3``); every answer is checked."""
    waiting = [srv.connect(timeout=10) for _ in range(3)]
    for c in waiting:
        c.send(build_request("GET", "/await?t=0.6"))  # pending in the worker's loop
    time.sleep(0.1)
    with srv.connect(timeout=10) as c:
        assert c.request("GET", "/await-then-block?t=0.3").body == b"blocked after await"
    for c in waiting:
        assert c.read_response().body == b"awaited"
        c.close()


def wait_until(what: str, predicate, timeout: float = 10.0):
    """Poll ``predicate`` every 0.1 s until it returns something truthy (returned); AssertionError naming ``what``
    after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")
