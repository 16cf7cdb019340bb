"""Helpers for tests/test_supervisor.py and tests/test_signals.py (not an app).

- `launcher`: behind the test modules' `launch` fixture; starts tests/support.py `Server`s with SUP_MARKERS set
  (see tests/apps/sup_app.py) and, at teardown, stops them by PID and SIGKILLs whatever is left in their
  process group (workers included).
- `Load`: client threads that hammer a server over loopback and account for every request: answered, refused
  (connect() refused) or lost.
- process helpers: worker PIDs from the "Started worker process [PID]" lines, process-group members.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psutil

from tests.support import IncompleteResponse, RawClient, Response, Server

APP = "tests.apps.sup_app:app"
WORKER_RE = re.compile(r"Started worker process \[(\d+)\]")


# -- processes ---------------------------------------------------------------------------------------------
def wait_for(pred, timeout: float, interval: float = 0.05):
    """Poll pred() until it returns something truthy (returned) or `timeout` passes (returns the last value)."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


def started_pids(srv: Server) -> list[int]:
    """PIDs from every 'Started worker process [PID]' line so far, in order."""
    return [int(m.group(1)) for m in WORKER_RE.finditer(srv.output)]


def is_running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() not in (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)
    except psutil.NoSuchProcess:
        return False


def child_pids(pid: int) -> set[int]:
    try:
        kids = psutil.Process(pid).children()
    except psutil.NoSuchProcess:
        return set()
    return {k.pid for k in kids if is_running(k.pid)}


def worker_pids(srv: Server) -> set[int]:
    """Workers alive now: logged as started, still running, and children of the supervisor."""
    kids = child_pids(srv.pid)
    return {p for p in started_pids(srv) if p in kids}


def group_members(pgid: int) -> list[int]:
    """Running processes in process group `pgid` (servers start in their own session: pgid = server PID)."""
    out = []
    for p in psutil.process_iter():
        try:
            if os.getpgid(p.pid) == pgid and is_running(p.pid):
                out.append(p.pid)
        except (ProcessLookupError, psutil.NoSuchProcess):
            pass
    return out


def assert_no_orphans(srv: Server, timeout: float = 5.0) -> None:
    left = wait_for(lambda: not group_members(srv.pid), timeout)
    assert left, f"processes left in the server's process group after it exited: {group_members(srv.pid)}"


def kill_group(pgid: int) -> None:
    for pid in group_members(pgid):
        try:
            os.kill(pid, signal.SIGCONT)  # a SIGSTOPped worker must be able to die
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def read_events(markers: Path) -> list[tuple[str, int, int]]:
    path = Path(markers) / "events.log"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        event, pid, tid = line.split()
        out.append((event, int(pid), int(tid)))
    return out


def lifespan_loops(markers: Path, event: str) -> set[tuple[int, int]]:
    """(pid, thread) pairs that ran lifespan `event` ('startup' or 'shutdown')."""
    return {(pid, tid) for ev, pid, tid in read_events(markers) if ev == event}


def entered(markers: Path, rid: str) -> bool:
    return any(ev == f"enter:{rid}" for ev, _, _ in read_events(markers))


def launcher(tmp_path):
    """Generator behind the test modules' `launch` fixture (``yield from launcher(tmp_path)``).

    launch(*args, env=None, ready=True) -> started Server, with SUP_MARKERS=<tmp_path>/markers."""
    markers = tmp_path / "markers"
    markers.mkdir()
    started: list[Server] = []

    def start(*args, env=None, ready=True, timeout=15.0) -> Server:
        e = {"SUP_MARKERS": str(markers), "PYTHONDONTWRITEBYTECODE": "1"}
        e.update(env or {})
        srv = Server(*args, env=e, ready=False)
        srv.markers = markers
        started.append(srv)
        srv.start()
        if ready:
            srv.wait_for_ready(timeout)
        return srv

    start.markers = markers
    yield start
    for srv in started:
        if srv.proc is None:
            continue
        for pid in group_members(srv.pid):  # a stopped worker would ignore SIGTERM forever
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        srv.stop()
        kill_group(srv.pid)


# -- raw clients ---------------------------------------------------------------------------------------------
# Every request a client sends has an id and ends in exactly one of three outcomes:
#   answered  a complete 200 whose body names the worker (pid=) and echoes the request's own id;
#   refused   connect() was refused: the listening socket was closed, so the server never accepted it (allowed
#             where the listener may be closed: shutdown);
#   lost      anything else once the connection was established (EOF, reset, timeout, a partial or wrong response,
#             a connect() that timed out), on a fresh or on a reused keep-alive connection. Tests assert none.
ANSWERED, REFUSED, LOST = "answered", "refused", "lost"
ID_RE = re.compile(rb"\bid=(\S+)")


class LostRequests(AssertionError):
    """Requests lost after the server accepted their connection (a distinct type, so a test can xfail on it alone)."""


def request_bytes(target: str, close: bool) -> bytes:
    conn = "Connection: close\r\n" if close else ""
    return f"GET {target} HTTP/1.1\r\nHost: localhost\r\n{conn}\r\n".encode()


def parse_pid(body: bytes) -> int | None:
    m = re.match(rb"pid=(\d+)", body)
    return int(m.group(1)) if m else None


def target_id(target: str) -> str | None:
    """The ``id`` query parameter of a request target, if any."""
    return parse_qs(urlsplit(target).query).get("id", [None])[0]


@dataclass
class Record:
    t0: float  # monotonic time the request was started (before connect, if it needed one)
    t1: float  # monotonic time its outcome was known
    kind: str  # ANSWERED | REFUSED | LOST
    rid: str
    detail: str = ""
    pid: int | None = None
    reused: bool = False  # sent on a keep-alive connection that had carried earlier requests
    response: Response | None = None

    @property
    def closes(self) -> bool:
        """The response said ``connection: close``."""
        return self.response is not None and (self.response.header("connection") or "").lower() == "close"


def one_request(addr, target: str, timeout: float = 5.0, rid: str | None = None) -> Record:
    """A request on a fresh connection (Connection: close), classified. ``rid`` defaults to the target's ``id``."""
    rid = target_id(target) if rid is None else rid
    t0 = time.monotonic()
    try:
        client = RawClient(addr, timeout=timeout)
    except ConnectionRefusedError as exc:
        return Record(t0, time.monotonic(), REFUSED, rid or "", repr(exc))
    except OSError as exc:  # a connect that timed out or was reset: the server got the SYN and did not serve it
        return Record(t0, time.monotonic(), LOST, rid or "", "connect: " + repr(exc))
    with client:
        return _exchange(client, target, rid, t0, close=True)


def _exchange(client: RawClient, target: str, rid: str | None, t0: float, close: bool, reused: bool = False):
    """Send one GET on an established connection and classify the outcome: ANSWERED or LOST."""
    try:
        client.send(request_bytes(target, close))
        resp = client.read_response("GET")
    except IncompleteResponse as exc:
        what = "partial response" if exc.partial else "closed before any response byte"
        detail = f"{what}: {exc} {exc.partial[:200]!r}"
        return Record(t0, time.monotonic(), LOST, rid or "", detail, reused=reused)
    except (OSError, AssertionError, ValueError) as exc:  # reset, broken pipe, timeout, malformed response
        return Record(t0, time.monotonic(), LOST, rid or "", repr(exc), reused=reused)
    rec = Record(t0, time.monotonic(), ANSWERED, rid or "", pid=parse_pid(resp.body), reused=reused, response=resp)
    m = ID_RE.search(resp.body)
    echoed = m.group(1).decode("latin-1") if m else None
    if resp.status != 200 or rec.pid is None or (rid and echoed != rid):
        rec.kind = LOST
        rec.detail = f"wrong response {resp.status} {resp.body[:200]!r}"
    return rec


class Load:
    """`threads` client threads sending GET `path?id=<id>` in a loop until stop(), accounting for every request.

    keepalive=False: one fresh connection per request (Connection: close).
    keepalive=True: a connection carries requests until the server answers one with `connection: close` (then the
    client connects again for its next request). Nothing is retried: a request on a reused connection that the
    server closes or resets is LOST like any other.
    Each thread numbers its requests (ids ``<tag><thread>-<n>``, n = 1, 2, ...) and records exactly one outcome for
    each; `stop()` checks that, and counts a request still unfinished when its thread did not end as LOST.
    """

    def __init__(self, addr, threads: int = 3, path: str = "/", keepalive: bool = False, pace: float = 0.0,
                 tag: str = "L", timeout: float = 5.0):
        self.addr = addr
        self.n = threads
        self.path = path
        self.keepalive = keepalive
        self.pace = pace
        self.tag = tag
        self.timeout = timeout
        self._records: list[list[Record]] = [[] for _ in range(threads)]
        self._sent = [0] * threads
        self._unfinished: list[Record] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> Load:
        for i in range(self.n):
            t = threading.Thread(target=self._run, args=(i,), daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> Load:
        self._stop.set()
        for t in self._threads:
            t.join(self.timeout + 10)
        now = time.monotonic()
        for i in range(self.n):
            recorded = [r.rid for r in self._records[i]]
            expected = [f"{self.tag}{i}-{k}" for k in range(1, self._sent[i] + 1)]
            assert recorded == expected[: len(recorded)], f"thread {i} records out of order: {recorded[:5]}..."
            for rid in expected[len(recorded) :]:  # its thread is stuck in it
                self._unfinished.append(Record(now, now, LOST, rid, "no outcome: the client is still waiting"))
        return self

    def _target(self, rid: str) -> str:
        sep = "&" if "?" in self.path else "?"
        return f"{self.path}{sep}id={rid}"

    def _run(self, i: int) -> None:
        records = self._records[i]
        client: RawClient | None = None
        uses = 0
        try:
            while not self._stop.is_set():
                self._sent[i] += 1
                rid = f"{self.tag}{i}-{self._sent[i]}"
                t0 = time.monotonic()
                if client is None:
                    try:
                        client = RawClient(self.addr, timeout=self.timeout)
                    except ConnectionRefusedError as exc:
                        records.append(Record(t0, time.monotonic(), REFUSED, rid, repr(exc)))
                        time.sleep(0.01)  # the server is gone: do not spin
                        continue
                    except OSError as exc:
                        records.append(Record(t0, time.monotonic(), LOST, rid, "connect: " + repr(exc)))
                        continue
                    uses = 0
                rec = _exchange(client, self._target(rid), rid, t0, close=not self.keepalive, reused=uses > 0)
                uses += 1
                records.append(rec)
                if not self.keepalive or rec.kind != ANSWERED or rec.closes:
                    client.close()
                    client = None
                if self.pace:
                    time.sleep(self.pace)
        finally:
            if client is not None:
                client.close()

    # -- results ---------------------------------------------------------------------------------------------
    @property
    def records(self) -> list[Record]:
        return [r for rs in self._records for r in rs] + self._unfinished

    @property
    def sent(self) -> int:
        return sum(self._sent)

    @property
    def answered(self) -> list[Record]:
        return [r for r in self.records if r.kind == ANSWERED]

    @property
    def refused(self) -> list[Record]:
        return [r for r in self.records if r.kind == REFUSED]

    @property
    def lost(self) -> list[Record]:
        return [r for r in self.records if r.kind == LOST]

    ok = answered  # the names older tests used
    failures = property(lambda self: [r for r in self.records if r.kind != ANSWERED])

    def pids(self) -> set[int]:
        return {r.pid for r in self.answered}

    def assert_none_lost(self, what: str = "") -> None:
        """Every request sent has an outcome, and none was lost once its connection was established. Nothing is
        excused, a shutdown's close included: the server refuses new handshakes before its last accept()
        (hybrid/listen_close.py), so none completes between that accept and the listener's close."""
        assert len(self.records) == self.sent, f"{self.sent} requests sent, {len(self.records)} outcomes"
        if self.lost:
            raise LostRequests(f"{what}: requests lost after the server accepted their connection: " + self.summary())

    def summary(self) -> str:
        kinds: dict[str, int] = {}
        for r in self.records:
            kinds[r.kind] = kinds.get(r.kind, 0) + 1
        reused = sum(1 for r in self.records if r.reused)
        closes = sum(1 for r in self.records if r.closes)
        lost = self.lost[:5]
        return (
            f"{self.sent} requests sent {kinds} ({reused} on reused keep-alive connections, {closes} answered with "
            "connection: close); first lost: "
            + "; ".join(f"{r.rid} t0={r.t0:.3f} +{r.t1 - r.t0:.3f}s reused={r.reused} {r.detail}" for r in lost)
        )


def entered_pid(markers: Path, rid: str) -> int | None:
    """PID of the worker process in which request `rid` reached the app, if it did."""
    for ev, pid, _ in read_events(markers):
        if ev == f"enter:{rid}":
            return pid
    return None


class BackgroundRequest(threading.Thread):
    """one_request(addr, target) in a thread; the Record is in .rec after join()."""

    def __init__(self, addr, target: str, timeout: float = 15.0):
        super().__init__(daemon=True)
        self.addr, self.target, self.timeout = addr, target, timeout
        self.rec: Record | None = None
        self.start()

    def run(self) -> None:
        self.rec = one_request(self.addr, self.target, timeout=self.timeout)
