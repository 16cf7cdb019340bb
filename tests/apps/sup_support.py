"""Helpers for tests/test_supervisor.py and tests/test_signals.py (not an app).

- `launcher`: behind the test modules' `launch` fixture; starts tests/support.py `Server`s with SUP_MARKERS set
  (see tests/apps/sup_app.py) and, at teardown, stops them by PID and SIGKILLs whatever is left in their
  process group (workers included).
- `Load`: client threads that hammer a server over loopback and classify every request's outcome.
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

import psutil

from tests.support import IncompleteResponse, RawClient, Server

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
def request_bytes(target: str, close: bool) -> bytes:
    conn = "Connection: close\r\n" if close else ""
    return f"GET {target} HTTP/1.1\r\nHost: localhost\r\n{conn}\r\n".encode()


def parse_pid(body: bytes) -> int | None:
    m = re.match(rb"pid=(\d+)", body)
    return int(m.group(1)) if m else None


@dataclass
class Record:
    t0: float  # monotonic time the request was started (before connect)
    t1: float
    kind: str  # ok | refused | dropped | partial | bad_status | timeout | error
    rid: str
    detail: str = ""
    pid: int | None = None
    reused: bool = False


def one_request(addr, target: str, timeout: float = 5.0, rid: str = "") -> Record:
    """A request on a fresh connection (Connection: close), classified."""
    t0 = time.monotonic()
    try:
        client = RawClient(addr, timeout=timeout)
    except ConnectionRefusedError as exc:
        return Record(t0, time.monotonic(), "refused", rid, repr(exc))
    except TimeoutError as exc:
        return Record(t0, time.monotonic(), "timeout", rid, "connect: " + repr(exc))
    except OSError as exc:
        return Record(t0, time.monotonic(), "error", rid, "connect: " + repr(exc))
    with client:
        return _exchange(client, target, rid, t0, close=True)


def _exchange(client: RawClient, target: str, rid: str, t0: float, close: bool, reused: bool = False):
    try:
        client.send(request_bytes(target, close))
        resp = client.read_response("GET")
    except IncompleteResponse as exc:
        kind = "partial" if exc.partial else "dropped"
        return Record(t0, time.monotonic(), kind, rid, f"{exc} {exc.partial[:200]!r}", reused=reused)
    except TimeoutError as exc:
        return Record(t0, time.monotonic(), "timeout", rid, repr(exc), reused=reused)
    except (ConnectionResetError, BrokenPipeError) as exc:
        kind = "partial" if client.buf else "dropped"
        return Record(t0, time.monotonic(), kind, rid, repr(exc), reused=reused)
    except (OSError, AssertionError, ValueError) as exc:
        return Record(t0, time.monotonic(), "error", rid, repr(exc), reused=reused)
    rec = Record(t0, time.monotonic(), "ok", rid, pid=parse_pid(resp.body), reused=reused)
    rec.response = resp
    if resp.status != 200 or rec.pid is None:
        rec.kind = "bad_status"
        rec.detail = f"{resp.status} {resp.body[:200]!r}"
    return rec


class Load:
    """`threads` client threads sending GET `path` in a loop until stop().

    keepalive=False: one fresh connection per request (Connection: close).
    keepalive=True: requests reuse a connection until the server answers `connection: close`. A request on a
    *reused* connection that is closed before any response byte arrives is the unavoidable HTTP/1.1 idle-close
    race (the server closed the idle connection while the request was on its way; clients retry such requests):
    it is counted in `stale` and retried at once on a fresh connection, not recorded as a failure.
    ids=True adds ?id=<unique> so the app logs which requests reached it.
    """

    def __init__(
        self,
        addr,
        threads: int = 3,
        path: str = "/",
        keepalive: bool = False,
        ids: bool = False,
        pace: float = 0.0,
        tag: str = "L",
    ):
        self.addr = addr
        self.n = threads
        self.path = path
        self.keepalive = keepalive
        self.ids = ids
        self.pace = pace
        self.tag = tag
        self.records: list[Record] = []
        self.stale = 0
        self._lock = threading.Lock()
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
            t.join(15)
        return self

    def _target(self, rid: str) -> str:
        if not self.ids:
            return self.path
        sep = "&" if "?" in self.path else "?"
        return f"{self.path}{sep}id={rid}"

    def _add(self, rec: Record) -> None:
        with self._lock:
            self.records.append(rec)

    def _run(self, i: int) -> None:
        n = 0
        client: RawClient | None = None
        while not self._stop.is_set():
            n += 1
            rid = f"{self.tag}{i}-{n}"
            target = self._target(rid)
            if not self.keepalive:
                self._add(one_request(self.addr, target, rid=rid))
            else:
                t0 = time.monotonic()
                if client is not None:
                    rec = _exchange(client, target, rid, t0, close=False, reused=True)
                    if rec.kind == "dropped":
                        with self._lock:
                            self.stale += 1
                        client.close()
                        client = None
                    else:
                        self._add(rec)
                        if rec.kind != "ok" or (rec.response.header("connection") or "").lower() == "close":
                            client.close()
                            client = None
                        if self.pace:
                            time.sleep(self.pace)
                        continue
                try:
                    client = RawClient(self.addr, timeout=5.0)
                except ConnectionRefusedError as exc:
                    self._add(Record(t0, time.monotonic(), "refused", rid, repr(exc)))
                    client = None
                    continue
                except OSError as exc:
                    self._add(Record(t0, time.monotonic(), "error", rid, "connect: " + repr(exc)))
                    client = None
                    continue
                rec = _exchange(client, target, rid, t0, close=False)
                self._add(rec)
                if rec.kind != "ok" or (rec.response.header("connection") or "").lower() == "close":
                    client.close()
                    client = None
            if self.pace:
                time.sleep(self.pace)
        if client is not None:
            client.close()

    # -- results ---------------------------------------------------------------------------------------------
    @property
    def ok(self) -> list[Record]:
        return [r for r in self.records if r.kind == "ok"]

    @property
    def failures(self) -> list[Record]:
        return [r for r in self.records if r.kind != "ok"]

    def pids(self) -> set[int]:
        return {r.pid for r in self.ok}

    def summary(self) -> str:
        kinds: dict[str, int] = {}
        for r in self.records:
            kinds[r.kind] = kinds.get(r.kind, 0) + 1
        fails = self.failures[:5]
        return (
            f"{len(self.records)} requests {kinds}, stale keep-alive retries {self.stale}; first failures: "
            + "; ".join(f"{r.kind} {r.rid} at t0={r.t0:.3f} {r.detail}" for r in fails)
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
