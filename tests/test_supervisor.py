"""The supervisor (issue 4): worker processes, replacement of dead/hung workers, SIGHUP, --reload, recycling after
--limit-max-requests, start failures, option validation.

Real server processes (tests/apps/sup_app.py) driven by concurrent raw-socket clients; servers are stopped by PID
and their process group is SIGKILLed at teardown (see tests/apps/sup_support.py).
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
import uuid

import pytest

from tests.apps.lifespan_failed import MESSAGE as LIFESPAN_FAILED_MESSAGE
from tests.apps.sup_support import (
    ANSWERED,
    APP,
    LOST,
    BackgroundRequest,
    Load,
    Record,
    assert_no_orphans,
    child_pids,
    entered,
    entered_pid,
    is_running,
    launcher,
    lifespan_loops,
    one_request,
    parse_pid,
    started_pids,
    wait_for,
    worker_pids,
)
from tests.support import run_cli


@pytest.fixture
def launch(tmp_path):
    yield from launcher(tmp_path)


BROKEN_MARKER = "sup-broken-import-marker-3b9e"


def _workers(launch, n=2, *extra):
    srv = launch(APP, "--port", "0", "--no-access-log", "--workers", str(n), *extra)
    assert wait_for(lambda: len(worker_pids(srv)) == n, 5), f"{n} workers expected:\n{srv.output}"
    return srv


def _get(srv, target="/"):
    rec = one_request(srv.addr, target)
    assert rec.kind == ANSWERED, f"GET {target}: {rec.kind} {rec.detail}"
    return rec


def answered_by(srv, pid: int, timeout: float = 5.0) -> Record | None:
    """Send fresh requests until one is answered by worker `pid` (the workers share one socket, so which one
    accepts is up to the kernel); every request must be answered. Returns that Record, or None after `timeout`."""
    deadline = time.monotonic() + timeout
    n = 0
    while time.monotonic() < deadline:
        n += 1
        rec = one_request(srv.addr, f"/?id=probe{pid}-{n}")
        assert rec.kind == ANSWERED, f"probe {n} for worker {pid}: {rec.kind} {rec.detail}"
        if rec.pid == pid:
            return rec
        time.sleep(0.005)
    return None


@pytest.mark.timeout(30)
def test_workers_are_child_processes_and_serve(launch):
    srv = _workers(launch, 2)
    pids = started_pids(srv)
    assert len(pids) == 2 and len(set(pids)) == 2, f"expected 2 'Started worker process [PID]' lines:\n{srv.output}"
    assert srv.pid not in pids, "the supervisor itself is not a worker"
    assert set(pids) <= child_pids(srv.pid), "workers must be children of the supervisor"
    answered = {_get(srv).pid for _ in range(20)}
    assert answered <= set(pids), f"responses from {answered}, workers are {pids}"
    # every worker ran lifespan startup (in each of its loops)
    assert {pid for pid, _ in lifespan_loops(srv.markers, "startup")} >= set(pids)
    assert srv.stop() == 0
    assert_no_orphans(srv)


@pytest.mark.timeout(60)
def test_sigkill_worker_is_replaced_and_service_keeps_answering(launch):
    srv = _workers(launch, 2)
    old = worker_pids(srv)
    load = Load(srv.addr, threads=3).start()
    # Slow requests in flight in both workers (with luck): those in the survivor must complete.
    slow = [BackgroundRequest(srv.addr, f"/slow?t=2&id=k{i}") for i in range(8)]
    assert wait_for(lambda: all(entered_pid(srv.markers, f"k{i}") for i in range(8)), 5), "slow requests stuck"
    where = {i: entered_pid(srv.markers, f"k{i}") for i in range(8)}
    busy = set(where.values())
    victim = min(busy) if len(busy) == 2 else min(old - busy)
    log_len = len(srv.output)
    t_kill = time.monotonic()
    os.kill(victim, signal.SIGKILL)
    replaced = wait_for(lambda: (lambda w: len(w) == 2 and victim not in w and w - old)(worker_pids(srv)), 10)
    t_new = time.monotonic()
    assert replaced, f"no replacement worker within 10 s of SIGKILL to {victim}:\n{srv.output[-3000:]}"
    (new_pid,) = worker_pids(srv) - old
    # The replacement serves: it answers requests itself, with the load still running.
    assert answered_by(srv, new_pid), f"replacement worker {new_pid} answered none of the requests sent for 5 s"
    time.sleep(0.5)
    load.stop()
    for s in slow:
        s.join(10)
    print(load.summary(), "slow requests per worker:", where, "victim:", victim)
    assert not is_running(victim)
    death = [line for line in srv.output[log_len:].splitlines() if str(victim) in line]
    assert death, f"the supervisor did not log the death of worker {victim}:\n{srv.output[log_len:][-2000:]}"
    assert any(("SIGKILL" in line or "signal 9" in line or "-9" in line) for line in death), (
        f"the log does not say why worker {victim} died (SIGKILL): {death}"
    )
    for i, s in enumerate(slow):
        if where[i] != victim:
            assert s.rec.kind == ANSWERED, f"in-flight request in the surviving worker: {s.rec.kind} {s.rec.detail}"
        else:
            assert s.rec.kind == LOST, f"a request in the killed worker cannot have been answered: {s.rec}"
    # The only requests allowed to fail are those the victim had accepted when it died: at most one per client
    # thread, started before the kill. The socket stayed open: nothing was refused.
    assert len(load.records) == load.sent
    assert not load.refused, load.summary()
    lost = load.lost
    assert len(lost) <= load.n, load.summary()
    stray = [r for r in lost if not r.t0 < t_kill <= r.t1]
    assert not stray, "requests lost that were not in flight at the kill: " + load.summary()
    after = [r for r in load.answered if r.t0 > t_kill]
    assert len(after) > 20, "service did not keep answering: " + load.summary()
    assert t_new - t_kill < 10
    assert srv.stop() == 0
    assert_no_orphans(srv)


REPLACEMENT_RE = re.compile(r"Started replacement worker \[(\d+)\]")


@pytest.mark.timeout(60)
def test_repeated_worker_crashes_back_off(launch):
    """A worker that keeps dying right after it is started is restarted ever more slowly (backoff), the other worker
    keeps serving meanwhile, and once the crashes stop the last replacement serves requests."""
    srv = _workers(launch, 2)
    survivor, victim = sorted(worker_pids(srv))
    killed = [victim]
    os.kill(victim, signal.SIGKILL)
    spawned: list[tuple[float, int]] = []  # (when the test saw the supervisor log it, pid) of each replacement
    seen = 0
    deadline = time.monotonic() + 15
    while len(spawned) < 5 and time.monotonic() < deadline:
        found = REPLACEMENT_RE.findall(srv.output)
        for pid in map(int, found[seen:]):
            spawned.append((time.monotonic(), pid))
            if len(spawned) < 5:  # crash every replacement but the last, as soon as it starts
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        seen = len(found)
        time.sleep(0.005)
    assert len(spawned) == 5, f"only {len(spawned)} replacements within 15 s:\n{srv.output[-3000:]}"
    gaps = [round(b[0] - a[0], 3) for a, b in zip(spawned, spawned[1:], strict=False)]
    print("restart gaps (s):", gaps)
    # Restarted at once the first time, then with a doubling delay: without backoff every gap would be about one
    # supervisor tick (50 ms) plus the time to notice the death.
    assert gaps[-1] >= 0.6, f"no backoff: replacements of a crash-looping worker {gaps} s apart"
    assert gaps[-2] >= 0.3 and gaps[-1] > 2 * gaps[0], f"backoff not growing: gaps {gaps} s"
    assert gaps[-1] < 5, f"backoff grew too fast: gaps {gaps} s"
    for pid in killed:
        assert wait_for(lambda pid=pid: f"Worker [{pid}] died unexpectedly" in srv.output, 5), (
            f"death of worker {pid} not logged:\n{srv.output[-3000:]}"
        )
    # The survivor served throughout; the last replacement, left alone, becomes ready and serves.
    assert is_running(survivor) and survivor in worker_pids(srv)
    last = spawned[-1][1]
    assert wait_for(lambda: worker_pids(srv) == {survivor, last}, 10), (
        f"last replacement {last} not ready: workers {worker_pids(srv)}\n{srv.output[-3000:]}"
    )
    assert answered_by(srv, last), f"the replacement worker {last} answered none of the requests sent for 5 s"
    assert answered_by(srv, survivor), f"worker {survivor} stopped answering"
    assert srv.stop() == 0
    assert_no_orphans(srv)


@pytest.mark.timeout(60)
def test_sighup_replaces_workers_without_failed_requests(launch):
    """SIGHUP under load, fresh connections and keep-alive ones: every request is answered (200 with its own id).
    The socket stays open, so nothing is refused; keep-alive clients of the old workers are told connection: close
    and reconnect; nothing is retried."""
    srv = _workers(launch, 2)
    old = worker_pids(srv)
    fresh = Load(srv.addr, threads=2, tag="F").start()
    kept = Load(srv.addr, threads=2, keepalive=True, pace=0.005, tag="K").start()  # idle 5 ms between requests
    time.sleep(0.3)
    slow = [BackgroundRequest(srv.addr, f"/slow?t=1&id=h{i}") for i in range(4)]
    assert wait_for(lambda: all(entered_pid(srv.markers, f"h{i}") for i in range(4)), 5), "slow requests stuck"
    t_hup = time.monotonic()
    srv.signal(signal.SIGHUP)
    swapped = wait_for(lambda: (lambda w: len(w) == 2 and not (w & old))(worker_pids(srv)), 15)
    swap_time = time.monotonic() - t_hup
    assert swapped, (
        f"workers not replaced within 15 s of SIGHUP (now {worker_pids(srv)}, old {old}):\n{srv.output[-3000:]}"
    )
    # keep going until the old workers are gone: their draining is what this test is about
    assert wait_for(lambda: not any(is_running(p) for p in old), 5), "old workers still running"
    time.sleep(0.3)
    fresh.stop()
    kept.stop()
    print("fresh:", fresh.summary())
    print("keep-alive:", kept.summary())
    assert srv.alive(), "the supervisor must survive SIGHUP"
    for s in slow:
        s.join(10)
        assert s.rec.kind == ANSWERED, f"in-flight request during SIGHUP: {s.rec.kind} {s.rec.detail}"
    new = worker_pids(srv)
    for load in (fresh, kept):
        assert not load.refused, "refused during the SIGHUP swap: " + load.summary()
        assert len(load.answered) > 20, load.summary()
        answered = load.pids()
        assert answered & old and answered & new, f"responses from {answered}; old {old}, new {new}"
    # keep-alive connections to the old workers were ended with connection: close, then the clients reconnected
    assert sum(r.reused for r in kept.answered) > 20, kept.summary()
    old_closes = [r for r in kept.answered if r.closes and r.pid in old]
    assert old_closes, "no keep-alive connection to an old worker was ended with connection: close: " + kept.summary()
    # old workers were stopped gracefully: lifespan shutdown ran in each of their loops
    started = {k for k in lifespan_loops(srv.markers, "startup") if k[0] in old}
    assert started and started <= lifespan_loops(srv.markers, "shutdown"), "old workers skipped lifespan shutdown"
    assert srv.stop() == 0
    assert_no_orphans(srv)
    for load in (fresh, kept):
        load.assert_none_lost(f"SIGHUP swap ({swap_time:.1f} s)")


RELOAD_APP = """\
import os

VERSION = {version!r}


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            await send({{"type": msg["type"] + ".complete"}})
            if msg["type"] == "lifespan.shutdown":
                return
    body = f"pid={{os.getpid()}} v={{VERSION}}".encode()
    await send({{"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]}})
    await send({{"type": "http.response.body", "body": body}})
"""


def _reload_server(launch, tmp_path, *extra):
    d = tmp_path / "reload_src"
    d.mkdir()
    mod = "sup_reload_" + uuid.uuid4().hex[:8]
    (d / f"{mod}.py").write_text(RELOAD_APP.format(version="v1"))
    srv = launch(
        f"{mod}:app", "--port", "0", "--no-access-log", "--app-dir", str(d), "--reload", "--reload-dir", str(d), *extra
    )
    rec = _get(srv)
    assert rec.response.body.endswith(b"v=v1"), rec.response.body
    time.sleep(0.5)  # let the watcher settle
    return srv, d, mod, rec.pid


@pytest.mark.timeout(60)
def test_reload_on_edit_changes_response_within_2s(launch, tmp_path):
    srv, d, mod, pid1 = _reload_server(launch, tmp_path)
    (d / f"{mod}.py").write_text(RELOAD_APP.format(version="v2-edited"))
    t0 = time.monotonic()
    failures, body, elapsed = [], b"", None
    while time.monotonic() - t0 < 6:
        rec = one_request(srv.addr, "/")
        if rec.kind != ANSWERED:
            failures.append(f"{rec.kind} {rec.detail}")
        elif rec.response.body.endswith(b"v=v2-edited"):
            elapsed = time.monotonic() - t0
            body = rec.response.body
            break
        time.sleep(0.05)
    print(f"reload took {elapsed} s")
    assert elapsed is not None, f"response never changed after the edit:\n{srv.output[-3000:]}"
    assert elapsed <= 2.0, f"response changed {elapsed:.2f} s after the edit (limit 2 s)"
    assert not failures, f"requests failed during the reload (the listening socket must stay open): {failures[:5]}"
    assert body.startswith(b"pid=") and int(body.split()[0][4:]) != pid1, "a new worker process should serve"
    assert srv.alive()
    assert srv.stop() == 0
    assert_no_orphans(srv)


@pytest.mark.timeout(60)
def test_reload_include_and_exclude(launch, tmp_path):
    srv, d, mod, pid1 = _reload_server(launch, tmp_path, "--reload-include", "*.tmpl", "--reload-exclude", "skip_*.py")
    (d / "skip_me.py").write_text("X = 1\n")
    time.sleep(1.5)
    assert _get(srv).pid == pid1, "a change to an excluded file (--reload-exclude skip_*.py) reloaded the app"
    (d / "page.tmpl").write_text("<p>hello</p>\n")
    changed = wait_for(lambda: _get(srv).pid != pid1, 4)
    assert changed, "a change to an included file (--reload-include *.tmpl) did not reload the app"
    assert srv.stop() == 0
    assert_no_orphans(srv)


IMPORT_FAILURES = [
    pytest.param("tests.apps.sup_broken:app", BROKEN_MARKER, id="raises"),
    pytest.param("tests.apps.sup_no_such_module_x7:app", "sup_no_such_module_x7", id="missing"),
]
MODES = [pytest.param([], id="single"), pytest.param(["--workers", "2"], id="workers2")]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("app", "marker"), IMPORT_FAILURES)
def test_app_import_failure_exits_nonzero_quickly(launch, mode, app, marker):
    srv = launch(app, "--port", "0", *mode, ready=False)
    t = time.monotonic()
    rc = srv.wait(5)
    assert rc is not None, f"still running 5 s after start with an app that cannot be imported:\n{srv.output[-3000:]}"
    assert rc != 0
    assert marker in srv.output, f"the import error is not in the output:\n{srv.output[-3000:]}"
    assert "Listening on" not in srv.output
    assert time.monotonic() - t < 5
    assert_no_orphans(srv)


@pytest.mark.timeout(30)
def test_lifespan_startup_failure_with_workers_exits_nonzero(launch):
    srv = launch("tests.apps.lifespan_failed:app", "--port", "0", "--workers", "2", ready=False)
    rc = srv.wait(10)
    assert rc is not None, f"still running 10 s after lifespan startup failed:\n{srv.output[-3000:]}"
    assert rc != 0
    assert LIFESPAN_FAILED_MESSAGE in srv.output, srv.output[-3000:]
    assert "Listening on" not in srv.output
    assert_no_orphans(srv)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("n", [1, 2])
def test_limit_max_requests_recycles_workers_without_failures(launch, n):
    """Recycling under load, fresh connections and keep-alive ones: every request is answered (200 with its own
    id), nothing refused, nothing retried."""
    srv = launch(APP, "--port", "0", "--no-access-log", "--workers", str(n), "--limit-max-requests", "100")
    assert wait_for(lambda: len(worker_pids(srv)) == n, 5), srv.output
    first = worker_pids(srv)
    fresh = Load(srv.addr, threads=2, tag="F").start()
    kept = Load(srv.addr, threads=2, keepalive=True, pace=0.005, tag="K").start()  # idle 5 ms between requests
    # At least 2 s of load, and on until recycling is visible to the clients (a replacement worker takes a while to
    # start on a loaded machine, and which worker accepts a reconnecting client is the kernel's choice), at most 15 s.
    time.sleep(2.0)
    deadline = time.monotonic() + 13

    def recycled_for_clients() -> bool:
        answered = fresh.pids() | kept.pids()
        return len(answered) > n and bool(answered - first) and len(kept.pids()) > n

    while time.monotonic() < deadline and not recycled_for_clients():
        time.sleep(0.1)
    fresh.stop()
    kept.stop()
    print("fresh:", fresh.summary())
    print("keep-alive:", kept.summary())
    total = fresh.sent + kept.sent
    for load in (fresh, kept):
        assert not load.refused, "refused while recycling: " + load.summary()
    answered = fresh.pids() | kept.pids()
    assert total >= 300, f"only {total} requests: not enough load to test recycling"
    assert len(answered) > n and answered - first, (
        f"{total} requests with --limit-max-requests 100 but responses only from {answered}"
    )
    # keep-alive clients of recycled workers were told connection: close and went on with another worker
    assert any(r.closes for r in kept.answered), "no keep-alive connection ended with connection: close: " + (
        kept.summary()
    )
    assert len({r.pid for r in kept.answered}) > n, "keep-alive clients never moved to a new worker: " + kept.summary()
    assert len(set(started_pids(srv))) > n, "no replacement worker was started"
    assert wait_for(lambda: len(worker_pids(srv)) == n, 5), f"expected {n} workers after recycling"
    retired = set(started_pids(srv)) - worker_pids(srv)
    assert wait_for(lambda: not any(is_running(p) for p in retired), 5)
    started = {k for k in lifespan_loops(srv.markers, "startup") if k[0] in retired}
    assert started <= lifespan_loops(srv.markers, "shutdown"), "recycled workers skipped lifespan shutdown"
    assert srv.stop() == 0
    assert_no_orphans(srv)
    for load in (fresh, kept):
        load.assert_none_lost("recycling")


@pytest.mark.timeout(60)
def test_unresponsive_worker_is_replaced_after_healthcheck_timeout(launch):
    """A worker that stops answering the heartbeat (here: SIGSTOPped) is replaced within the timeout + a few s."""
    srv = _workers(launch, 2, "--timeout-worker-healthcheck", "1")
    old = worker_pids(srv)
    victim = min(old)
    t = time.monotonic()
    os.kill(victim, signal.SIGSTOP)
    try:
        replaced = wait_for(lambda: (lambda w: len(w) == 2 and victim not in w)(worker_pids(srv)), 1 + 8)
        assert replaced, f"stopped worker {victim} not replaced within 9 s:\n{srv.output[-3000:]}"
        assert wait_for(lambda: not is_running(victim), 5), "the hung worker was left running (stopped)"
        assert time.monotonic() - t < 1 + 8
        (new_pid,) = worker_pids(srv) - old
        assert answered_by(srv, new_pid), f"replacement worker {new_pid} answered none of the requests sent for 5 s"
        for _ in range(10):
            _get(srv)
    finally:
        try:
            os.kill(victim, signal.SIGCONT)
        except ProcessLookupError:
            pass
    assert srv.stop() == 0
    assert_no_orphans(srv)


@pytest.mark.timeout(60)
def test_blocking_handler_longer_than_healthcheck_keeps_its_worker(launch):
    """A handler that blocks its thread (time.sleep) longer than --timeout-worker-healthcheck is what the monitor's
    takeover is for: the request completes, the worker is not replaced, the others keep answering meanwhile."""
    srv = _workers(launch, 2, "--timeout-worker-healthcheck", "1")
    old = worker_pids(srv)
    box = {}

    def blocked():
        # 3 s: the supervisor pings within 1 s of the block's start and gives up on an answer 1 s later
        box["rec"] = one_request(srv.addr, "/block?t=3&id=blk", timeout=15)

    t = threading.Thread(target=blocked, daemon=True)
    t.start()
    assert wait_for(lambda: entered(srv.markers, "blk"), 5), "blocking request did not reach the app"
    load = Load(srv.addr, threads=2, pace=0.01).start()
    t.join(15)
    load.stop()
    print(load.summary())
    rec = box.get("rec")
    assert rec is not None and rec.kind == ANSWERED, (
        f"blocking request: {rec and (rec.kind, rec.detail)}\n{srv.output[-3000:]}"
    )
    assert worker_pids(srv) == old, (
        f"workers replaced while a handler blocked: {old} -> {worker_pids(srv)}\n{srv.output[-3000:]}"
    )
    load.assert_none_lost("while a handler blocked")
    assert not load.refused and len(load.answered) > 20, load.summary()
    assert srv.stop() == 0


@pytest.mark.timeout(60)
def test_ctrl_c_to_process_group_is_graceful(launch):
    """Ctrl+C in a terminal sends SIGINT to the supervisor and every worker at once: still one graceful
    shutdown (in-flight request completes, lifespan shutdown everywhere), exit 0."""
    srv = _workers(launch, 2, "--timeout-graceful-shutdown", "10")
    box = {}

    def slow():
        box["rec"] = one_request(srv.addr, "/slow?t=1.5&id=cc", timeout=15)

    t = threading.Thread(target=slow, daemon=True)
    t.start()
    assert wait_for(lambda: entered(srv.markers, "cc"), 5), "slow request did not reach the app"
    os.killpg(srv.pid, signal.SIGINT)
    rc = srv.wait(15)
    t.join(5)
    assert rc == 0, f"exit code {rc}:\n{srv.output[-3000:]}"
    assert box["rec"].kind == ANSWERED, box["rec"].detail
    started = lifespan_loops(srv.markers, "startup")
    assert started and started <= lifespan_loops(srv.markers, "shutdown")
    assert_no_orphans(srv)


@pytest.mark.timeout(30)
def test_workers_exit_when_supervisor_is_killed(launch):
    """If the supervisor dies (SIGKILL, OOM killer), its workers do not live on as orphans."""
    srv = _workers(launch, 2)
    workers = worker_pids(srv)
    os.kill(srv.pid, signal.SIGKILL)
    srv.wait(5)
    gone = wait_for(lambda: not any(is_running(p) for p in workers), 10)
    assert gone, f"workers {[p for p in workers if is_running(p)]} still running 10 s after the supervisor died"


@pytest.mark.timeout(60)
def test_reload_with_broken_edit_keeps_serving_then_recovers(launch, tmp_path):
    """Saving a file with a syntax error does not take the dev server down; fixing it reloads."""
    srv, d, mod, pid1 = _reload_server(launch, tmp_path)
    (d / f"{mod}.py").write_text("def broken(:\n")
    time.sleep(1.5)
    assert srv.alive(), f"server exited after a broken edit:\n{srv.output[-3000:]}"
    rec = _get(srv)
    assert rec.response.body.endswith(b"v=v1"), rec.response.body
    (d / f"{mod}.py").write_text(RELOAD_APP.format(version="v3-fixed"))
    fixed = wait_for(lambda: _get(srv).response.body.endswith(b"v=v3-fixed"), 3)
    assert fixed, f"not reloaded after the fix:\n{srv.output[-3000:]}"
    assert srv.stop() == 0
    assert_no_orphans(srv)


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("--workers", "0"),
        ("--limit-max-requests", "0"),
        ("--timeout-worker-healthcheck", "0"),
    ],
)
def test_bad_values_exit_2_naming_the_option(option, value):
    rc, out = run_cli(APP, "--port", "0", option, value, timeout=10)
    assert rc == 2, f"exit code {rc}:\n{out}"
    assert option in out, f"error does not name {option}:\n{out}"
    assert "Listening on" not in out


@pytest.mark.timeout(30)
def test_uds_survives_worker_swap_and_is_removed_at_shutdown(launch, tmp_path):
    """Only the supervisor owns the unix socket's file: a worker leaving (SIGHUP) must not unlink it."""
    import httpx

    path = str(tmp_path / "hybrid.sock")
    srv = launch(APP, "--uds", path, "--no-access-log", "--workers", "2")
    old = worker_pids(srv)

    def get() -> int:
        """GET / over the unix socket; returns the PID of the worker that answered."""
        with httpx.Client(transport=httpx.HTTPTransport(uds=path), timeout=5) as c:
            r = c.get("http://hybrid/?id=uds")
        assert r.status_code == 200 and r.text.endswith(" id=uds"), r.text
        return parse_pid(r.content)

    assert get() in old
    os.kill(srv.pid, signal.SIGHUP)
    assert wait_for(lambda: len(worker_pids(srv)) == 2 and not (worker_pids(srv) & old), 10), srv.output
    assert os.path.exists(path), "a replaced worker removed the supervisor's unix socket file"
    assert get() in worker_pids(srv), "not answered by one of the new workers"
    assert srv.stop() == 0
    assert not os.path.exists(path)


@pytest.mark.timeout(60)
def test_reload_waits_for_a_fix_when_the_app_fails_to_import_at_startup(launch, tmp_path):
    """As uvicorn does: with --reload an app that cannot be imported at startup does not end the server; it keeps
    watching, and the first change that fixes it starts the app."""
    d = tmp_path / "reload_src"
    d.mkdir()
    mod = "sup_reload_" + uuid.uuid4().hex[:8]
    (d / f"{mod}.py").write_text("def broken(:\n")
    srv = launch(f"{mod}:app", "--port", "0", "--no-access-log", "--app-dir", str(d), "--reload", "--reload-dir",
                 str(d), ready=False)
    assert wait_for(lambda: "waiting for a file change" in srv.output, 10), srv.output
    time.sleep(0.3)  # (the watcher is running once the supervisor said so; a short margin for it to settle)
    assert srv.alive(), srv.output
    (d / f"{mod}.py").write_text(RELOAD_APP.format(version="fixed"))
    srv.wait_for_ready(10)
    assert _get(srv).response.body.endswith(b"v=fixed")
    assert srv.stop() == 0
    assert_no_orphans(srv)
