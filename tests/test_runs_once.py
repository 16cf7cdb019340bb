"""Issue 20, items 2 and 3: the app runs exactly once per request. A GET whose app starts streaming in a worker thread
streams from that thread to its end (it used to be abandoned and run again in the async pool: a counter bumped twice,
a one-time token spent by the abandoned run so the client got 410, a middleware's header appended twice, and a
handler streaming from a helper task left waiting forever). Its route is learned, so the next request of it goes to
the pool before any app code runs; meanwhile the worker's other connections are served.

Real server processes over 127.0.0.1; tests/apps/once.py records runs, read back through ``GET /state``.
"""

from __future__ import annotations

import json
import signal
import threading
import time

import pytest

from tests.support import RawClient, Server, build_request

APP = "tests.apps.once:app"

pytestmark = pytest.mark.timeout(60)


def start(*flags: str) -> Server:
    return Server(APP, "--port", "0", "--no-access-log", *flags)


def state(srv: Server) -> dict:
    with srv.connect() as c:
        resp = c.request("GET", "/state")
    assert resp.status == 200
    return json.loads(resp.body)


def csv(path: str, chunks: int = 3) -> bytes:
    return b"".join(b"%s,%d\n" % (path.encode(), i) for i in range(chunks)) + b"end\n"


def test_streamed_gets_with_new_slugs_run_once_each_and_spend_their_token_once():
    """A slug is not generalised (only numbers and UUIDs are), so each of these starts in a worker and streams:
    each runs once, sees the scope's header list as the client sent it, and a one-time token is good."""
    paths = [f"/export/report-{name}.csv" for name in ("a", "b", "c", "d", "e")]
    tokens = [f"/download/tok-{name}" for name in ("x", "y", "z")]
    with start() as srv:
        with srv.connect() as c:
            for path in paths:
                resp = c.request("GET", path)
                assert resp.status == 200 and resp.chunked and resp.body == csv(path), (path, resp.status)
        for path in tokens:  # each on a new connection, as a browser's download would be
            with srv.connect() as c:
                resp = c.request("GET", path)
                assert (resp.status, resp.body) == (200, csv(path)), (path, resp.status, resp.body)
        st = state(srv)
    assert st["runs"] == {path: 1 for path in paths + tokens}, st
    assert st["added_seen"] == [0] * len(paths), st  # (a second run saw the first run's appended header)
    assert st["statuses"] == [[path, 200] for path in tokens], st


def test_a_learned_route_goes_to_the_pool_before_any_app_code_and_still_runs_once():
    """The second request of a route that streamed in a worker is handed off before the app starts: once."""
    with start() as srv:
        with srv.connect() as c:
            for i in range(3):  # (numbers are generalised: one route)
                assert c.request("GET", f"/export/{i}/report.csv").body == csv(f"/export/{i}/report.csv")
        st = state(srv)
        assert srv.stop() == 0
    assert st["runs"] == {f"/export/{i}/report.csv": 1 for i in range(3)}, st
    assert "2 handoffs to the async pool;" in srv.output, srv.output


def test_a_handler_streaming_from_a_helper_task_delivers_every_byte():
    with start() as srv, srv.connect(timeout=5) as c:
        resp = c.request("GET", "/helper/one?chunks=5")
        assert resp.status == 200 and resp.body == csv("/helper/one", 5)
        assert c.request("GET", "/plain").body == b"ok"  # the connection is still in step
        st = state(srv)
    assert st["runs"] == {"/helper/one": 1, "/plain": 1}, st


def test_sigterm_during_a_helper_task_stream_lets_it_finish_and_exits():
    """No --timeout-graceful-shutdown: shutdown waits for in-flight requests, so a request left waiting on
    nothing would keep the process alive for ever."""
    with start() as srv, srv.connect(timeout=5) as c:
        c.send(build_request("GET", "/helper/two?chunks=10&interval=0.05"))
        time.sleep(0.2)  # streaming now
        t0 = time.monotonic()
        srv.signal(signal.SIGTERM)
        resp = c.read_response()
        rc = srv.wait(5)
        exited = time.monotonic() - t0
    assert resp.status == 200 and resp.body == csv("/helper/two", 10)
    # (the connection, idle after its response, is closed by the drain, not by --timeout-keep-alive 5 s later)
    assert rc == 0 and exited < 2.5, (rc, exited, srv.output)


@pytest.mark.parametrize("block", [False, True], ids=["awaiting", "blocking"])
def test_other_connections_are_answered_while_a_worker_streams(block):
    """A 2.4 s stream from a worker thread, one chunk every 0.3 s, each wait an ``asyncio.sleep`` (the worker's
    loop serves its set between the steps) or a ``time.sleep`` (each step blocks its thread: the monitor hands the
    set to a spare). Meanwhile plain requests on new connections are answered at once."""
    path = "/export/long.csv"
    query = f"?chunks=8&interval=0.3{'&block=1' if block else ''}"
    done = {}
    with start() as srv:
        stream = srv.connect(timeout=10)

        def read_stream():
            done["resp"] = stream.read_response()
            done["at"] = time.monotonic()

        stream.send(build_request("GET", path + query))
        reader = threading.Thread(target=read_stream)
        reader.start()
        time.sleep(0.4)  # the stream is under way (and, blocking, the first takeover is behind us)
        latencies = []
        for i in range(12):
            with RawClient(srv.addr, timeout=5) as c:
                t0 = time.monotonic()
                assert c.request("GET", f"/plain-{i}").body == b"ok"
                latencies.append(time.monotonic() - t0)
            time.sleep(0.05)
        last_plain = time.monotonic()
        reader.join(10)
        stream.close()
        st = state(srv)
    assert done["resp"].status == 200 and done["resp"].body == csv(path, 8)
    assert max(latencies) < 0.2, f"plain latencies (ms) during the stream: {[round(x * 1000) for x in latencies]}"
    assert done["at"] > last_plain, "the stream ended before the plain requests did: nothing was measured"
    assert st["runs"][path] == 1, st
