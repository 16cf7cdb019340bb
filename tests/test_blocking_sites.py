"""Where did it block (issue 25, docs/blocking.md): a handler that blocks is reported with the code location it was
blocked at, read while it was still blocked, grouped by (route, location), bounded, in the log, the metrics, the
SIGUSR1 dump and the shutdown summary. The blocking lines of tests/apps/blocking.py and tests/blocking_lib.py are
marked 'BLOCKS: NAME'; each test checks that the report names that function and line."""

from __future__ import annotations

import http.server
import re
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from .support import TESTS, Server

pytestmark = pytest.mark.timeout(30)

APP = "tests.apps.blocking:app"
# Small enough that the first takeover comes at the monitor's slow tick; every handler here blocks far longer.
ARGS = ("--port", "0", "--no-access-log", "--blocking-threshold", "0.002")


def line_of(tag: str, module: str = "apps/blocking.py") -> str:
    """'tests/apps/blocking.py:16' for the line marked 'BLOCKS: tag'."""
    lines = (TESTS / module).read_text().splitlines()
    numbers = [i for i, text in enumerate(lines, 1) if text.rstrip().endswith(f"# BLOCKS: {tag}")]
    assert len(numbers) == 1, tag
    return f"tests/{module}:{numbers[0]}"


def wait_for(srv: Server, pattern: str, timeout: float = 5.0) -> re.Match:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        m = re.search(pattern, srv.output)
        if m:
            return m
        time.sleep(0.02)
    raise AssertionError(f"no line matching {pattern!r} in:\n{srv.output}")


def warning_for(srv: Server, route: str) -> str:
    """The one 'ROUTE blocked N ms at ...' warning of a route (once per route and location)."""
    wait_for(srv, rf"WARNING: +{re.escape(route)} blocked ")
    lines = [line for line in srv.output.splitlines() if re.match(rf"WARNING: +{re.escape(route)} blocked ", line)]
    assert len(lines) == 1, srv.output
    return lines[0]


def blocked_ms(line: str) -> int:
    return int(re.search(r" blocked ([\d,]+) ms at ", line).group(1).replace(",", ""))


def test_time_sleep_is_reported_at_its_call_site_with_its_duration():
    with Server(APP, *ARGS) as srv:
        with srv.connect() as c:
            assert c.request("GET", "/sleep?t=0.15").body == b"done"
        line = warning_for(srv, "GET /sleep")
        # the app's frame that called nap, then nap's own line with its source text
        assert re.search(rf"at tests/apps/blocking.py:\d+ in app -> {line_of('sleep')} in nap: time\.sleep\(seconds\)",
                         line), line
        assert 150 <= blocked_ms(line) < 1000, line


def test_a_blocking_socket_recv_is_reported_where_it_waits():
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def reply_late():  # a local server that answers 150 ms after accepting
        conn, _ = listener.accept()
        with conn:
            time.sleep(0.15)
            conn.sendall(b"late")

    helper = threading.Thread(target=reply_late, daemon=True)
    helper.start()
    try:
        with Server(APP, *ARGS) as srv:
            with srv.connect() as c:
                assert c.request("GET", f"/recv?port={listener.getsockname()[1]}").body == b"done"
            line = warning_for(srv, "GET /recv")
            assert f"{line_of('recv')} in read_reply: return sock.recv(16)" in line, line
            assert 140 <= blocked_ms(line) < 1000, line
    finally:
        helper.join(5)
        listener.close()


def test_a_standard_library_call_is_reported_at_the_apps_line_that_made_it():
    """urllib.request over a slow local HTTP server: the location is the app's call (the innermost frame that is
    neither the standard library nor site-packages); the trace goes on to the recv it waits in."""
    class Slow(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            time.sleep(0.15)
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"[]")

        def log_message(self, *args):
            pass

    backend = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Slow)
    helper = threading.Thread(target=backend.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    helper.start()
    try:
        with Server(APP, *ARGS) as srv:
            with srv.connect() as c:
                assert c.request("GET", f"/orders?port={backend.server_address[1]}").body == b"done"
            line = warning_for(srv, "GET /orders")
            assert re.search(rf" at {line_of('urlopen')} in fetch_orders -> urllib/request.py:\d+ in urlopen -> "
                             r"\.\.\. -> .* -> socket.py:\d+ in readinto: return self._sock.recv_into\(b\) \(",
                             line), line
            srv.signal(signal.SIGUSR1)
            wait_for(srv, rf"GET /orders at {line_of('urlopen')} in fetch_orders: 1 times")
    finally:
        backend.shutdown()
        backend.server_close()
        helper.join(5)


def test_a_lock_held_by_another_thread_is_reported_at_the_acquire():
    with Server(APP, *ARGS) as srv:
        with srv.connect() as c:
            assert c.request("GET", "/lock?t=0.15").body == b"done"
        line = warning_for(srv, "GET /lock")
        assert f"{line_of('lock')} in wait_for_lock: with LOCK:" in line, line
        assert 140 <= blocked_ms(line) < 1000, line


def test_a_cpu_bound_handler_is_reported_where_it_spends_its_time_not_where_it_began():
    """0.2 s in phase_one (where the takeover finds it), then 0.8 s in phase_two: looked at again every 0.25 s,
    it is reported in phase_two, with phase_one as a place it was also seen."""
    with Server(APP, *ARGS) as srv:
        with srv.connect(timeout=10) as c:
            assert c.request("GET", "/cpu?first=0.2&t=0.8").body == b"done"
        line = warning_for(srv, "GET /cpu")
        assert re.search(rf"in crunch -> {line_of('cpu2')} in phase_two: while ", line), line
        assert re.search(rf"; also at {line_of('cpu1')} in phase_one \(\d+ of \d+ looks\)", line), line


def test_a_call_a_few_frames_deep_in_a_helper_module_shows_the_path_to_it():
    with Server(APP, *ARGS) as srv:
        with srv.connect() as c:
            assert c.request("GET", "/deep?t=0.15").body == b"done"
        line = warning_for(srv, "GET /deep")
        assert re.search(r"at tests/apps/blocking.py:\d+ in app -> tests/blocking_lib.py:\d+ in fetch -> "
                         rf"tests/blocking_lib.py:\d+ in _request -> {line_of('lib', 'blocking_lib.py')} in "
                         r"_wait_for_reply: time\.sleep\(seconds\)", line), line


def test_a_later_step_and_the_async_pool_are_reported_and_counted_with_the_shutdown_summary():
    """A step after an await (the worker's loop) and a stream in the async pool (its loop, watched by the
    monitor): same route and location, one warning, both counted; SIGUSR1 and the shutdown list them."""
    with Server(APP, *ARGS) as srv:
        with srv.connect() as c:
            assert c.request("GET", "/await-sleep?t=0.15").body == b"done"
        line = warning_for(srv, "GET /await-sleep")
        assert f"{line_of('sleep')} in nap: time.sleep" in line and "(hybrid-worker-" in line, line
        with srv.connect() as c:
            resp = c.request("GET", "/sleep?t=0.2", headers=[("Accept", "text/event-stream")])
            assert resp.body == b"done"
        line = warning_for(srv, "GET /sleep")
        assert f"{line_of('sleep')} in nap: time.sleep" in line and "(the async pool's loop)" in line, line
        srv.signal(signal.SIGUSR1)
        dump = wait_for(srv, r"WARNING: +GET /sleep at (\S+) in nap: 1 times, ([\d,]+) ms in all, worst ([\d,]+) ms")
        assert dump.group(1) == line_of("sleep") and 200 <= int(dump.group(3).replace(",", "")) < 1000, srv.output
        assert srv.stop() == 0
    summary = re.search(r"INFO: +Where handlers blocked \(top 2 of 2 by total time\):\n"
                        r"INFO: +GET /sleep at (\S+) in nap: 1 times.*\n"
                        r"INFO: +GET /await-sleep at (\S+) in nap: 1 times", srv.output)
    assert summary and summary.group(1) == summary.group(2) == line_of("sleep"), srv.output


def test_async_mode_reports_a_step_that_blocks_its_one_loop():
    with Server(APP, *ARGS, "--mode", "async") as srv:
        with srv.connect() as c:
            assert c.request("GET", "/sleep?t=0.2").body == b"done"
        line = warning_for(srv, "GET /sleep")
        assert f"{line_of('sleep')} in nap: time.sleep" in line and "(the async pool's loop)" in line, line
        assert 200 <= blocked_ms(line) < 1000, line


def _metrics(port: int) -> str:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return data.split(b"\r\n\r\n", 1)[1].decode()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_flood_of_distinct_blocking_routes_stays_within_the_bound():
    """160 distinct routes block (16 at a time): the first 100 (route, location) pairs are counted each on its own
    and warned once each, every later one as route="other", location="other"."""
    from hybrid.blocking_sites import SITES_LIMIT

    port = _free_port()
    with Server(APP, *ARGS, "--metrics-port", str(port)) as srv:
        def one(i):
            with srv.connect(timeout=10) as c:
                return c.request("GET", f"/many/{i}?t=0.03").body

        with ThreadPoolExecutor(16) as pool:
            assert set(pool.map(one, range(160))) == {b"done"}
        wait_for(srv, rf"More than {SITES_LIMIT} routes and locations blocked: the rest are counted as 'other'")
        series = re.findall(r'^hybrid_blocked_seconds_total\{location="([^"]*)",route="([^"]*)"\} (\S+)$',
                            _metrics(port), re.M)
        assert len(series) == SITES_LIMIT + 1, series
        assert ("other", "other") in {(loc, route) for loc, route, _ in series}
        ours = [loc for loc, route, _ in series if route.startswith("GET /many/")]
        assert len(ours) == SITES_LIMIT and set(ours) <= {f"{line_of('distinct')} in distinct", "unknown"}, ours
        # (a step may end before the sampler reads it: 'unknown'; 30 ms is long enough for nearly all)
        assert ours.count(f"{line_of('distinct')} in distinct") >= SITES_LIMIT * 0.8, ours
        warned = [line for line in srv.output.splitlines() if re.match(r"WARNING: +GET /many/\d+ blocked ", line)]
        assert len(warned) == SITES_LIMIT, len(warned)


def test_sigusr1_names_a_handler_still_blocked():
    """A handler stuck for good never returns, so it is never recorded: the SIGUSR1 dump lists it as blocked now,
    with where it is."""
    with Server(APP, *ARGS) as srv:
        with srv.connect(timeout=10) as c:
            c.send(b"GET /sleep?t=1.5 HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.5)  # (flagged at the takeover, 10-20 ms in; read at once, again at 0.25 s)
            srv.signal(signal.SIGUSR1)
            m = wait_for(srv, r"Blocked now: (hybrid-worker-\d+) for ([\d,]+) ms so far, at .* -> (\S+) in nap: "
                              r"time\.sleep\(seconds\)")
            assert m.group(3) == line_of("sleep") and 300 <= int(m.group(2).replace(",", "")) < 1500, srv.output
            assert c.read_response().body == b"done"


def test_a_thousand_distinct_blocking_sites_keep_the_table_at_its_bound():
    """The table itself (no server: the flood above shows it end to end): 1,000 distinct (route, location) pairs
    leave SITES_LIMIT entries and one 'other' holding the rest, and the memory they hold stops growing."""
    import tracemalloc

    from hybrid.blocking_sites import OTHER, SITES_LIMIT, BlockingSites
    from hybrid.stack_sampler import Sample

    class Cycle:
        def __init__(self, path):
            self.scope = {"method": "GET", "path": path}

    def record(sites, i):
        sample = Sample(0, i, 0.0)
        sample.add(((f"/srv/app/m{i}.py", i, f"f{i}"),))
        sites.record(Cycle(f"/p/{i}"), sample, 0.01, "test")

    sites = BlockingSites()
    for i in range(SITES_LIMIT):
        record(sites, i)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(SITES_LIMIT, 1000):
        record(sites, i)
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert len(sites.sites) == SITES_LIMIT + 1
    other = sites.sites[(OTHER, OTHER)]
    assert other.count == 1000 - SITES_LIMIT and abs(other.total - other.count * 0.01) < 1e-6
    assert grown < 20_000, grown  # (one 'other' entry and the log's state; 900 entries would be ~200 KB)
