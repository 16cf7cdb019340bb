"""Shutdown bounds (issue 19, items 3 and 5): a handler blocked forever does not stretch the graceful bound nor
swallow the clients that connect while the server stops; open streams end within a default bound when no
--timeout-graceful-shutdown is given, after SIGTERM and after SIGHUP.

Real server processes over loopback, stopped by PID; their process group is SIGKILLed at teardown
(tests/apps/sup_support.py).
"""

from __future__ import annotations

import signal
import threading
import time

import pytest

from hybrid.shutdown import EXIT_CUT_SHORT, STREAMS_DEFAULT
from tests.apps.sup_support import (
    APP,
    Load,
    RawClient,
    entered,
    is_running,
    launcher,
    request_bytes,
    wait_for,
    worker_pids,
)

pytestmark = pytest.mark.timeout(60)

SSE_APP = "tests.apps.lifespan_stuck:app"


@pytest.fixture
def launch(tmp_path):
    yield from launcher(tmp_path)


@pytest.mark.parametrize("blocked", [1, 2])
def test_blocked_handlers_do_not_stretch_the_bound_nor_swallow_clients(launch, blocked):
    """One or two handlers blocked in time.sleep for a minute (their sets taken over by spares), then SIGTERM with
    --timeout-graceful-shutdown 2 while clients keep connecting: every client whose connection was accepted is
    answered (the others are refused), and the process exits 4 (cut short) within the bound plus the 1 s lifespan
    shutdown gets, not 2 + 10 s per stuck thread."""
    srv = launch(APP, "--port", "0", "--no-access-log", "--timeout-graceful-shutdown", "2")
    stuck = []
    for i in range(blocked):
        client = RawClient(srv.addr, timeout=30)
        client.send(request_bytes(f"/block?t=60&id=blk{i}", close=False))
        stuck.append(client)
        assert wait_for(lambda i=i: entered(srv.markers, f"blk{i}"), 5), f"blk{i} never reached the app"
        time.sleep(0.3)  # (the monitor hands the set on within 20 ms)
    load = Load(srv.addr, threads=2, tag="S", timeout=15).start()
    time.sleep(0.3)
    t0 = time.monotonic()
    srv.signal(signal.SIGTERM)
    rc = srv.wait(12)
    took = time.monotonic() - t0
    load.stop()
    for client in stuck:
        client.close()
    assert rc is not None, f"still running 12 s after SIGTERM:\n{srv.output[-3000:]}"
    assert rc == EXIT_CUT_SHORT, f"exit code {rc}:\n{srv.output[-3000:]}"
    assert took < 2 + 0.75, f"exit took {took:.1f} s with --timeout-graceful-shutdown 2 and {blocked} stuck"
    assert load.answered, load.summary()
    load.assert_none_lost(f"SIGTERM with {blocked} blocked handler(s)")


POOL = b"Accept: text/event-stream\r\n"  # (an EventSource's request: served by the async pool)
WORKER = b""  # (no Accept: the app streams from a worker thread, chunks 0.2 s apart)


def _open_stream(addr, accept: bytes = POOL) -> RawClient:
    client = RawClient(addr, timeout=20)
    client.send(b"GET /sse HTTP/1.1\r\nHost: localhost\r\n" + accept + b"\r\n")
    head = client.read_head()
    assert head.status == 200 and head.header("transfer-encoding") == "chunked", head.raw_head
    client.read_until(b"data: tick\n\n")
    return client


@pytest.mark.parametrize("accept", [pytest.param(POOL, id="pool"), pytest.param(WORKER, id="worker")])
def test_open_stream_ends_within_default_bound_at_sigterm(launch, accept):
    """Without --timeout-graceful-shutdown an endless SSE stream gets STREAMS_DEFAULT (5 s), then the connection
    closes (no last chunk: a cut-off response must not look whole); the process exits 0 (streams end so at every
    shutdown: nothing was cut short). Whether the async pool serves the stream or a worker thread does."""
    srv = launch(SSE_APP, "--port", "0", "--no-access-log")
    client = _open_stream(srv.addr, accept)
    t0 = time.monotonic()
    srv.signal(signal.SIGTERM)
    rc = srv.wait(STREAMS_DEFAULT + 6)
    took = time.monotonic() - t0
    assert rc is not None, f"still running {took:.1f} s after SIGTERM with an open stream:\n{srv.output[-3000:]}"
    assert rc == 0, f"exit code {rc}:\n{srv.output[-3000:]}"
    assert STREAMS_DEFAULT - 0.5 <= took < STREAMS_DEFAULT + 3, f"exit {took:.1f} s after SIGTERM"
    rest = client.read_to_eof()  # (the server closed it: EOF, or a reset read as EOF)
    client.close()
    assert not rest.endswith(b"0\r\n\r\n"), "the cut-off stream was ended as if complete"


def test_open_stream_does_not_keep_an_old_worker_after_sighup(launch):
    """--workers 2 without --timeout-graceful-shutdown: after SIGHUP the old workers end, the one holding an
    open stream within STREAMS_DEFAULT of being told to stop; then SIGTERM ends the supervisor promptly."""
    srv = launch(SSE_APP, "--port", "0", "--no-access-log", "--workers", "2")
    assert wait_for(lambda: len(worker_pids(srv)) == 2, 5), srv.output
    old = worker_pids(srv)
    client = _open_stream(srv.addr)
    done = threading.Event()
    threading.Thread(target=lambda: (client.read_to_eof(), done.set()), daemon=True).start()
    srv.signal(signal.SIGHUP)
    assert wait_for(lambda: "Replaced 2 workers (SIGHUP)" in srv.output, 15), srv.output[-3000:]
    gone = wait_for(lambda: not any(is_running(p) for p in old), STREAMS_DEFAULT + 4)
    assert gone, f"old workers still running {STREAMS_DEFAULT + 4} s after being replaced:\n{srv.output[-3000:]}"
    assert done.wait(2), "the stream's client was not closed"
    client.close()
    t0 = time.monotonic()
    srv.signal(signal.SIGTERM)
    rc = srv.wait(8)
    assert rc == 0, f"exit code {rc} {time.monotonic() - t0:.1f} s after SIGTERM:\n{srv.output[-3000:]}"
