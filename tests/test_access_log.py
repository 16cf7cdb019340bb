"""The access log's fast path (hybrid/logs.py): lines made directly, buffered, written in batches by a flusher
thread or by the thread that fills the buffer, and flushed at shutdown; --log-config keeps the logging module.

Real server processes over real sockets on 127.0.0.1 (tests/support.py); their output is a pipe, as under a
process manager. A few in-process checks of the buffer itself (many threads, pipe-sized writes) come last.
"""

import io
import json
import re
import signal
import sys
import threading
import time

import pytest

from hybrid import logs

from .support import Server, build_request

pytestmark = pytest.mark.timeout(90)

APP = "tests.apps.access_log:app"
TEXT_LINE = re.compile(r'^INFO:     127\.0\.0\.1:(\d+) - "GET (/\S*) HTTP/1\.1" 200$')
PROMISED = 0.1  # the longest a line may wait in memory (logs.FLUSH_DELAY, 0.05 s)
SLACK = 0.45  # a busy 2-core machine: scheduling, the test's own reading thread


def wait_for(srv: Server, predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate(srv.output)
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not seen within {timeout} s; output ends:\n{srv.output[-3000:]}")


def access_lines(output: str, fmt: str, marker: str) -> list:
    """(path, record) of every access line whose path has ``marker``; a line that mentions it but is not one
    complete, well-formed line fails the test (torn or interleaved writes)."""
    found = []
    for line in output.splitlines():
        if marker not in line:
            continue
        if fmt == "text":
            m = TEXT_LINE.match(line)
            assert m, f"not one complete access line: {line!r}"
            found.append((m.group(2), None))
        else:
            record = json.loads(line)  # (raises on a torn line)
            found.append((record["path"], record))
    return found


def _client(srv, paths, responses, errors) -> None:
    try:
        with srv.connect(timeout=15) as c:
            for path in paths:
                r = c.request("GET", path)
                assert r.status == 200, r
                responses.append(path)
    except BaseException as exc:  # noqa: BLE001 - reported by the test
        errors.append(exc)


def _run_clients(srv, jobs) -> list:
    responses, errors = [], []
    threads = [threading.Thread(target=_client, args=(srv, paths, responses, errors)) for paths in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    return responses


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_concurrent_requests_give_exactly_one_complete_line_each_in_order(fmt):
    """Plain requests on four connections, while a fifth blocks its serving thread (the monitor hands that
    thread's connections to another: lines come from several threads at once): every request has exactly one
    line, complete, and each connection's lines are in the order of its requests."""
    n = 150
    with Server(APP, "--port", "0", "--access-log-format", fmt) as srv:
        jobs = [[f"/c{k}/{i}?pad={'x' * (i % 40)}" for i in range(n)] for k in range(4)]
        jobs.append([f"/block?t=0.3&c=b{i}" for i in range(3)])
        responses = _run_clients(srv, jobs)
        assert len(responses) == 4 * n + 3
        wait_for(srv, lambda out: len(access_lines(out, fmt, "/c")) >= 4 * n, timeout=5)
        blocked = wait_for(srv, lambda out: len(access_lines(out, fmt, "&c=b")) >= 3 and "ok", timeout=5)
        time.sleep(0.3)  # (nothing more may come)
        lines = access_lines(srv.output, fmt, "/c")
        assert blocked and len(access_lines(srv.output, fmt, "&c=b")) == 3
    assert len(lines) == 4 * n, f"{len(lines)} lines for {4 * n} requests"
    for k in range(4):
        assert [path for path, _ in lines if path.startswith(f"/c{k}/")] == jobs[k]
    if fmt == "json":
        records = [r for _, r in lines]
        assert {r["where"] for r in records} == {"worker"}
        assert all(r["status"] == 200 and r["bytes"] == 2 and r["http_version"] == "1.1" for r in records)
        assert all(isinstance(r["duration_ms"], float) and r["duration_ms"] >= 0 for r in records)
        assert len({r["request_id"] for r in records}) == 4 * n


class GatedServer(Server):
    """A server whose output the test stops reading for a while: the pipe fills, and the workers' writes wait
    for room at the same time (where a write longer than PIPE_BUF would be cut and mixed with another's)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.reading = threading.Event()
        self.reading.set()

    def _drain(self) -> None:
        pipe, reading = self.proc.stdout, self.reading

        class Gated:
            @staticmethod
            def readline():
                reading.wait()
                return pipe.readline()

        self.proc.stdout = Gated()
        super()._drain()


def test_worker_processes_sharing_a_pipe_never_tear_lines():
    """Two worker processes write batches of long JSON lines into the same pipe, which fills up: a batch goes in
    writes of whole lines no longer than PIPE_BUF, so no line is ever cut by the other process's write."""
    n = 150
    pad = "p" * 1500  # each line about 1.7 KB: a batch of a few lines is past PIPE_BUF
    with GatedServer(APP, "--port", "0", "--workers", "2", "--access-log-format", "json") as srv:
        wait_for(srv, lambda out: out.count("Started worker process") >= 2)
        jobs = [[f"/w{k}/{i}?{pad}" for i in range(n)] for k in range(6)]
        srv.reading.clear()
        threading.Timer(1.0, srv.reading.set).start()
        responses = _run_clients(srv, jobs)
        srv.reading.set()
        assert len(responses) == 6 * n
        wait_for(srv, lambda out: out.count('"path":"/w') >= 6 * n, timeout=10)
        lines = access_lines(srv.output, "json", '"path":"/w')
    assert len(lines) == 6 * n
    for k in range(6):
        assert [path for path, _ in lines if path.startswith(f"/w{k}/")] == jobs[k]


def test_a_line_appears_within_the_promised_delay_when_the_server_is_idle():
    """After its request, nothing else happens: no later request or server event pushes the line out."""
    with Server(APP, "--port", "0") as srv, srv.connect() as c:
        for i in range(3):
            time.sleep(0.3)  # idle: the flusher is asleep
            assert c.request("GET", f"/idle/{i}").status == 200
            answered = time.monotonic()
            wait_for(srv, lambda out, i=i: f"/idle/{i} " in out, timeout=5)
            late = srv.line_time(f"/idle/{i} ") - answered
            assert late < PROMISED + SLACK, f"the line came {late:.3f} s after the response"


def _held_lines_then_stop(srv: Server, stop) -> tuple[list, list]:
    """Ask the server to hold its buffered lines back, make requests, check their lines are held, then stop."""
    with srv.connect() as c:
        assert c.request("GET", "/warm").status == 200
        time.sleep(0.3)
        assert c.request("GET", "/hold-log").status == 200
        time.sleep(0.3)  # the flusher now sleeps an hour
        paths = [f"/held/{i}" for i in range(200)]
        for path in paths:
            assert c.request("GET", path).status == 200
    time.sleep(0.5)
    before = access_lines(srv.output, "text", "/held/")
    stop()
    return before, [path for path, _ in access_lines(srv.output, "text", "/held/")], paths


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_buffered_lines_are_written_at_shutdown(sig):
    with Server(APP, "--port", "0") as srv:
        before, after, paths = _held_lines_then_stop(srv, lambda: (srv.signal(sig), srv.wait(15)))
    assert srv.returncode == 0, srv.output[-2000:]
    assert before == [], "the lines were not held back: this test would prove nothing"
    assert after == paths


def test_a_worker_process_writes_its_buffered_lines_when_it_exits():
    """A supervised worker leaves by os._exit (no atexit, so no logging.shutdown): it flushes first."""
    with Server(APP, "--port", "0", "--workers", "1", "--limit-max-requests", "100000") as srv:
        wait_for(srv, lambda out: "Started worker process" in out)
        before, after, paths = _held_lines_then_stop(srv, lambda: (srv.signal(signal.SIGTERM), srv.wait(20)))
    assert before == [], "the lines were not held back: this test would prove nothing"
    assert after == paths


def test_a_recycled_worker_writes_every_line():
    """--limit-max-requests: the supervisor replaces a worker after its requests (SIGTERM, drain, exit) while
    requests keep coming: every answered request has its line, once, and each worker's lines are in order."""
    with Server(APP, "--port", "0", "--limit-max-requests", "40") as srv:
        wait_for(srv, lambda out: "Started worker process" in out)
        pids, paths = [], []
        deadline = time.monotonic() + 30
        while len(pids) < 20 or pids[0] in pids[-20:]:  # until the first worker is gone, 20 requests ago
            assert time.monotonic() < deadline, "no worker was recycled"
            paths.append(f"/r/{len(paths)}")
            pids.append(_pid_then_path(srv, paths[-1]))
            time.sleep(0.01)
        wait_for(srv, lambda out: len(access_lines(out, "text", "/r/")) >= len(paths), timeout=5)
    got = [path for path, _ in access_lines(srv.output, "text", "/r/")]
    assert sorted(got) == sorted(paths) and len(set(got)) == len(paths)
    for pid in set(pids):  # (each process writes its own lines in order; two processes' batches alternate)
        mine = {path for path, served_by in zip(paths, pids, strict=True) if served_by == pid}
        assert [path for path in got if path in mine] == [path for path in paths if path in mine]


def _pid_then_path(srv, path: str) -> bytes:
    """GET /pid then GET ``path`` on one new connection (so one process answers both); the pid. A draining
    worker's last accepts (hybrid/door.py) answer with connection: close, and a client must not send on that
    connection again (RFC 9112, 9.6): then both go on a new connection, which a draining worker no longer takes
    (so the second try is the last one needed; the bound only keeps a bug from looping)."""
    for _ in range(3):
        with srv.connect(timeout=10) as c:  # (a new connection each time: the old worker closes its own)
            pid = c.request("GET", "/pid")
            if pid.header("connection") != "close":
                assert c.request("GET", path).status == 200
                return pid.body
    raise AssertionError("three connections in a row were answered with connection: close")


def test_log_config_keeps_the_logging_module(tmp_path):
    """With --log-config, a handler of the file gets a LogRecord for every request (its fields in args), and no
    fast-path line is written."""
    config = {"version": 1,
              "handlers": {"mark": {"class": "tests.apps.access_log.MarkingHandler"},
                           "err": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}},
              "loggers": {"hybrid.access": {"handlers": ["mark"], "level": "INFO", "propagate": False},
                          "hybrid.error": {"handlers": ["err"], "level": "INFO", "propagate": False}}}
    path = tmp_path / "log.json"
    path.write_text(json.dumps(config))
    with Server(APP, "--port", "0", "--log-config", str(path)) as srv, srv.connect() as c:
        for i in range(5):
            assert c.request("GET", f"/cfg/{i}", headers=[("X-Request-ID", f"id-{i}")]).status == 200
        wait_for(srv, lambda out: out.count("HANDLER-SAW") >= 5)
    saw = [line for line in srv.output.splitlines() if line.startswith("HANDLER-SAW")]
    assert saw == [f"HANDLER-SAW hybrid.access /cfg/{i} worker id-{i}" for i in range(5)]
    assert '"GET /cfg/' not in srv.output


# Targets, methods, versions and ids whose text needs care: quotes and backslashes (escaped in JSON), a --root-path
# with characters past ASCII (its UTF-8 bytes are latin-1 text in the line, \u00XX in JSON), a method of its own.
HARD = [
    ("GET", '/a"b\\c/{x}|^`~?q="1"&r=\\', "HTTP/1.1", 'id"with\\quotes'),
    ("PATCH", "/plain", "HTTP/1.0", None),  # (a generated id)
    ("PROPFIND", "/%C3%A9t%C3%A9?x=%22", "HTTP/1.1", "plain-id"),
]


def _client_lines(output: str) -> list:
    return [line for line in output.splitlines() if "127.0.0.1:" in line and "Listening on" not in line]


def _hard_lines(fmt: str, *args: str) -> list:
    """Each HARD request on a connection of its own; their access lines, with what differs between two servers
    or two runs (the client's port, the time, the duration, a generated id) masked."""
    with Server(APP, "--port", "0", "--root-path", "/r\u00e9\u20ac", "--access-log-format", fmt, *args) as srv:
        for method, target, version, rid in HARD:
            with srv.connect() as c:
                c.send(build_request(method, target, [("X-Request-ID", rid)] if rid else [], version=version))
                assert c.read_response(method).status == 200
        wait_for(srv, lambda out: len(_client_lines(out)) >= len(HARD))
    lines = [re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", line) for line in _client_lines(srv.output)]
    if fmt == "json":
        lines = [re.sub(r'"duration_ms":[0-9.]+', '"duration_ms":0', re.sub(r'"time":"[^"]+"', '"time":"T"', line))
                 for line in lines]
        lines = [re.sub(r'"request_id":"[0-9a-f]{12}-[0-9a-f]+"', '"request_id":"GENERATED"', line) for line in lines]
    return lines


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_the_compiled_line_is_the_logging_modules_line(fmt, tmp_path):
    """The default setup (the line made in C, hybrid/_speedups/accesslog.pyx) and a --log-config that formats the
    same records with hybrid's formatters through the logging module write the same lines, byte for byte."""
    formatter = ({"()": "hybrid.logs.JsonAccessFormatter"} if fmt == "json"
                 else {"()": "hybrid.logs.DefaultFormatter", "use_colors": False})
    config = {"version": 1, "formatters": {"f": formatter},
              "handlers": {"h": {"class": "logging.StreamHandler", "formatter": "f", "stream": "ext://sys.stderr"},
                           "err": {"class": "logging.StreamHandler", "stream": "ext://sys.stderr"}},
              "loggers": {"hybrid.access": {"handlers": ["h"], "level": "INFO", "propagate": False},
                          "hybrid.error": {"handlers": ["err"], "level": "INFO", "propagate": False}}}
    path = tmp_path / "log.json"
    path.write_text(json.dumps(config))
    compiled, logging_module = _hard_lines(fmt), _hard_lines(fmt, "--log-config", str(path))
    assert len(compiled) == len(HARD) and compiled == logging_module, (compiled, logging_module)
    if fmt == "json":
        records = [json.loads(line) for line in compiled]
        assert [(r["method"], r["path"], r["request_id"], r["http_version"]) for r in records] == [
            ("GET", '/r\u00c3\u00a9\u00e2\u0082\u00ac/a"b\\c/{x}|^`~?q="1"&r=\\', 'id"with\\quotes', "1.1"),
            ("PATCH", "/r\u00c3\u00a9\u00e2\u0082\u00ac/plain", "GENERATED", "1.0"),
            ("PROPFIND", "/r\u00c3\u00a9\u00e2\u0082\u00ac/%C3%A9t%C3%A9?x=%22", "plain-id", "1.1")]
    else:
        root = "/r\u00c3\u00a9\u00e2\u0082\u00ac"  # (the root path's UTF-8 bytes, each a latin-1 character)
        assert compiled[0] == f'INFO:     127.0.0.1:PORT - "GET {root}/a"b\\c/{{x}}|^`~?q="1"&r=\\ HTTP/1.1" 200'



# -- the buffer in process ------------------------------------------------------------------------------------

class _Recorder(io.StringIO):
    """A text stream recording each write reaching it between flushes (as the writes to a file descriptor)."""

    def __init__(self, regular: bool) -> None:
        super().__init__()
        self.regular = regular
        self.writes: list[str] = []
        self._open = ""

    def write(self, s: str) -> int:
        time.sleep(0)  # (a real write lets other threads run meanwhile)
        self._open += s
        return len(s)

    def flush(self) -> None:
        if self._open:
            self.writes.append(self._open)
            self._open = ""


@pytest.fixture
def pending(monkeypatch):
    buffer = logs._Pending()
    buffer.limit = 10**9
    monkeypatch.setattr(logs, "_regular_file", lambda stream: stream.regular)
    return buffer


@pytest.mark.parametrize("regular", [True, False])
def test_pipe_sized_writes_of_whole_lines(pending, regular):
    lines = [f"line {i} {'é' * (i % 7)}{'x' * (i * 37 % 300)}\n" for i in range(500)] + ["y" * 9000 + "\n"]
    pending.handler = type("H", (), {"stream": _Recorder(regular)})()
    for line in lines:
        pending.lines.append(line)
    pending.flush()
    writes = pending.handler.stream.writes
    assert "".join(writes) == "".join(lines)
    assert all(w.endswith("\n") for w in writes)
    if regular:
        assert len(writes) == 1
    else:
        assert all(len(w.encode()) <= logs.ATOMIC_WRITE for w in writes[:-1]) and len(writes) > 10


def test_many_threads_adding_and_flushing_lose_nothing(pending):
    """Threads append without a lock while others flush (as the flusher and a full buffer do); threads switch
    as often as the interpreter lets them."""
    pending.handler = type("H", (), {"stream": _Recorder(True)})()
    pending.limit = 37  # many flushes from the adding threads themselves
    per_thread = 5000

    def add(k):
        for i in range(per_thread):
            pending.add(f"{k} {i}\n")

    threads = [threading.Thread(target=add, args=(k,)) for k in range(6)]
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    for t in threads:
        t.start()
    try:
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(previous)
    pending.flush()
    got = "".join(pending.handler.stream.writes).splitlines()
    assert len(got) == 6 * per_thread
    for k in range(6):
        assert [int(line.split()[1]) for line in got if line.startswith(f"{k} ")] == list(range(per_thread))
