"""HTTP/2 streams and --mode async in the lifecycle events and metrics, as HTTP/1.1 requests in the threaded mode
are (tests/test_lifecycle.py): every stream whose app started has one RequestStarted and one ResponseCompleted,
keyed by the connection's fd and the stream id, whether its app ran on a worker or on the pool's loop, answered,
failed or was reset by the client; --mode async opens and closes each connection once. A real server process on
127.0.0.1, the frame-level h2 client of tests/h2client.py; every wait is bounded."""

from __future__ import annotations

import socket

import h2.errors
import h2.events
import pytest

from tests.h2client import H2Client
from tests.support import Server, wait_until
from tests.test_h2 import alpn_socket, pki  # noqa: F401 - (pki: the fixture, a CA and a certificate)
from tests.test_lifecycle import OPS, _free_port, _metrics, _script_server, _wait_events

pytestmark = pytest.mark.timeout(60)

N = 20  # plain requests on one connection, all in flight together
SSE = [(b"accept", b"text/event-stream")]  # (runs on the pool's loop, as an HTTP/1.1 one is handed off)


def _get(m: dict, key: str) -> float:
    return m.get(key, 0.0)


def _responses(m: dict, where: str) -> float:
    return sum(v for k, v in m.items() if k.startswith("hybrid_responses_total{") and f'where="{where}"' in k)


def _held(client: H2Client, headers) -> int:
    """An event stream (on the pool's loop) whose head and first event arrived: the app waits for the client."""
    sid = client.request("/sse-hold", headers=headers)
    client.wait_for(lambda e: isinstance(e, h2.events.DataReceived) and e.stream_id == sid)
    return sid


def test_h2_streams_counted_once_each_in_metrics():
    port = _free_port()
    with Server(OPS, "--port", "0", "--metrics-port", str(port)) as srv:
        client = H2Client(srv.addr)
        plain = [client.request("/plain") for _ in range(N)]  # (one write: the app runs them side by side)
        fails = [client.request("/fail") for _ in range(2)]
        sse = [client.request("/sse", headers=SSE) for _ in range(3)]
        for sid in plain:
            headers, got = client.response(sid)
            assert headers[b":status"] == b"200" and got == b"ok"
        for sid in fails:
            assert client.response(sid)[0][b":status"] == b"500"
        for sid in sse:
            assert client.response(sid)[1] == b"part 0\npart 1\npart 2\n"
        held = _held(client, SSE)  # on the pool's loop, mid-response
        body = client.request("/read-body", body=b"abc", end=False)  # on a worker, waiting for the rest
        m = wait_until("both held requests in flight", lambda: (m := _metrics(port))
                       and m["hybrid_requests_in_flight"] == 2 and m)
        assert m["hybrid_connections_open"] == 1, m
        for sid in (held, body):
            client.conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
        client.flush()
        # The connection stays open: only the streams' own ends can bring the count back
        m = wait_until("in flight back to 0, the connection open", lambda: (m := _metrics(port))
                       and m["hybrid_requests_in_flight"] == 0 and m, timeout=5)
        assert m["hybrid_connections_open"] == 1, m
        client.close()
        m = wait_until("the connection closed", lambda: (m := _metrics(port))
                       and m["hybrid_connections_open"] == 0 and m, timeout=5)
        # the access log has a line for each stream answered, as HTTP/1.1 has: the reset event stream's with
        # the status it was sent; none for the body's request, reset before any response
        lines = {'"GET /plain HTTP/2" 200': N, '"GET /fail HTTP/2" 500': 2, '"GET /sse HTTP/2" 200': 3,
                 '"GET /sse-hold HTTP/2" 200': 1}
        wait_until("the access log lines", lambda: all(srv.output.count(k) >= n for k, n in lines.items()), timeout=5)
    assert m['hybrid_requests_started_total{where="worker"}'] == N + 2 + 1, m  # plain, fail, read-body
    assert m['hybrid_requests_started_total{where="pool"}'] == 3 + 1, m  # sse, sse-hold
    # one response per stream answered in full; the two the client reset are out of flight, and no response
    assert _get(m, 'hybrid_responses_total{status="2xx",where="worker"}') == N, m
    assert _get(m, 'hybrid_responses_total{status="5xx",where="worker"}') == 2, m
    assert _get(m, 'hybrid_responses_total{status="2xx",where="pool"}') == 3, m
    assert _responses(m, "worker") == N + 2 and _responses(m, "pool") == 3, m
    assert m['hybrid_request_duration_seconds_count{where="worker"}'] == N + 2, m
    assert m['hybrid_request_duration_seconds_count{where="pool"}'] == 3, m
    assert m["hybrid_requests_in_flight"] == 0 and m["hybrid_connections_opened_total"] == 1, m
    assert m["hybrid_connections_closed_total"] == 1, m
    assert {k: srv.output.count(k) for k in lines} == lines and "/read-body HTTP/2" not in srv.output


def test_h2_collector_pairs_each_stream_by_fd_and_stream_id(tmp_path):
    srv, out = _script_server(tmp_path)
    with srv:
        client = H2Client(srv.addr)
        sids = [client.request("/plain", headers=[(b"x-request-id", b"h2-%d" % i)]) for i in range(N)]
        fail = client.request("/fail", headers=[(b"x-request-id", b"h2-fail")])
        held = _held(client, [*SSE, (b"x-request-id", b"h2-held")])
        for sid in sids:
            assert client.response(sid)[1] == b"ok"
        assert client.response(fail)[0][b":status"] == b"500"
        client.conn.reset_stream(held, h2.errors.ErrorCodes.CANCEL)
        client.flush()
        _wait_events(out, lambda ev: any(n == "ResponseCompleted" and f["request_id"] == "h2-held" for n, f in ev))
        client.close()
        events = _wait_events(out, lambda ev: any(n == "ConnectionClosed" for n, _ in ev))
    opened = [f for n, f in events if n == "ConnectionOpened"]
    assert len(opened) == 1, events
    fd = opened[0]["fd"]

    def about(rid):
        return [(n, f["where"], f["fd"], f["stream_id"], f.get("status"), f.get("bytes"), f.get("complete"))
                for n, f in events if f.get("request_id") == rid]

    for i, sid in enumerate(sids):
        assert about(f"h2-{i}") == [("RequestStarted", "worker", fd, sid, None, None, None),
                                    ("ResponseCompleted", "worker", fd, sid, 200, 2, True)], events
    assert about("h2-fail") == [("RequestStarted", "worker", fd, fail, None, None, None),
                                ("ResponseCompleted", "worker", fd, fail, 500, 21, True)]
    # reset by the client after its head and first event: what it was sent, not complete
    assert about("h2-held") == [("RequestStarted", "pool", fd, held, None, None, None),
                                ("ResponseCompleted", "pool", fd, held, 200, 13, False)]
    names = [n for n, f in events if f.get("fd") == fd]
    assert names[0] == "ConnectionOpened" and names[-1] == "ConnectionClosed" and names.count("ConnectionClosed") == 1
    done = [f for n, f in events if n == "ResponseCompleted"]
    assert all(0 < f["duration_ns"] < 10e9 for f in done), done


def _h1(srv, path: str, n: int) -> None:
    with srv.connect() as c:
        for _ in range(n):
            assert c.request("GET", path).status in (200, 500)


def test_async_mode_opens_and_closes_each_connection_once():
    port = _free_port()
    with Server(OPS, "--port", "0", "--mode", "async", "--metrics-port", str(port)) as srv:
        _h1(srv, "/plain", 5)  # keep-alive: five requests, one connection
        _h1(srv, "/fail", 1)
        with srv.connect() as c:  # a client that leaves mid-body
            c.send(b"POST /read-body HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
            wait_until("the body's request in flight", lambda: _metrics(port)["hybrid_requests_in_flight"] == 1)
        client = H2Client(srv.addr)  # h2c: handed from the pool's HTTP/1.1 reader to an HTTP/2 session
        sids = [client.request("/plain") for _ in range(N)]
        for sid in sids:
            assert client.response(sid)[1] == b"ok"
        m = _metrics(port)
        assert m["hybrid_connections_open"] == 1 and m["hybrid_connections_opened_total"] == 4, m
        client.close()
        with socket.create_connection(srv.addr, timeout=5):
            pass  # accepted, closed without a byte
        m = wait_until("every connection closed", lambda: (m := _metrics(port))
                       and m["hybrid_connections_closed_total"] == 5 and m, timeout=5)
    assert m["hybrid_connections_opened_total"] == 5 and m["hybrid_connections_open"] == 0, m
    assert m['hybrid_requests_started_total{where="pool"}'] == 5 + 1 + 1 + N, m
    assert m['hybrid_responses_total{status="2xx",where="pool"}'] == 5 + N, m
    assert m['hybrid_responses_total{status="5xx",where="pool"}'] == 1, m
    assert m["hybrid_requests_in_flight"] == 0 and m["hybrid_client_disconnects_total"] == 1, m


def test_async_mode_tls_connections_opened_and_closed_once(pki):  # noqa: F811 - (the fixture)
    port = _free_port()
    args = ("--ssl-certfile", pki["chain"], "--ssl-keyfile", pki["key"], "--mode", "async")
    with Server(OPS, "--port", "0", *args, "--metrics-port", str(port)) as srv:
        client = H2Client(sock=alpn_socket(pki, srv, ["h2"]))  # ALPN h2: from the handshake to an HTTP/2 session
        sids = [client.request("/plain") for _ in range(3)]
        for sid in sids:
            assert client.response(sid)[1] == b"ok"
        with alpn_socket(pki, srv, ["http/1.1"]) as sock:
            sock.sendall(b"GET /plain HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            got = b""
            while chunk := sock.recv(4096):
                got += chunk
            assert got.startswith(b"HTTP/1.1 200") and got.endswith(b"ok"), got
        with socket.create_connection(srv.addr, timeout=5) as raw:  # no TLS: its handshake fails
            raw.sendall(b"GET / HTTP/1.1\r\n\r\n")
            try:
                raw.recv(4096)  # (until the server closes it: an alert at most)
            except ConnectionResetError:
                pass
        m = _metrics(port)
        assert m["hybrid_connections_opened_total"] == 3 and m["hybrid_connections_open"] == 1, m
        client.close()
        m = wait_until("every connection closed", lambda: (m := _metrics(port))
                       and m["hybrid_connections_closed_total"] == 3 and m, timeout=5)
    assert m["hybrid_connections_opened_total"] == 3 and m["hybrid_connections_open"] == 0, m
    assert m['hybrid_requests_started_total{where="pool"}'] == 4 and m["hybrid_requests_in_flight"] == 0, m
    assert m['hybrid_responses_total{status="2xx",where="pool"}'] == 4, m


def test_h2_body_over_limit_reported_as_its_413():
    port = _free_port()
    with Server(OPS, "--port", "0", "--limit-request-body", "10", "--metrics-port", str(port)) as srv:
        client = H2Client(srv.addr)
        sid = client.request("/read-body", method="POST", body=b"x" * 100)
        assert client.response(sid)[0][b":status"] == b"413"
        m = wait_until("its response counted", lambda: (m := _metrics(port))
                       and _responses(m, "worker") + _responses(m, "pool") and m, timeout=5)
        client.close()
        wait_until("its access log line", lambda: '"POST /read-body HTTP/2" 413' in srv.output, timeout=5)
    assert m["hybrid_requests_in_flight"] == 0, m
    # The body came in the read of the head (the server answered before the app, as HTTP/1.1 does when a
    # Content-Length is over the limit: no RequestStarted), or after the app started on a worker
    started = _get(m, 'hybrid_requests_started_total{where="worker"}')
    answered = {w: _get(m, f'hybrid_responses_total{{status="4xx",where="{w}"}}') for w in ("worker", "pool")}
    assert (started, answered) in [(0, {"worker": 0, "pool": 1}), (1, {"worker": 1, "pool": 0})], m
    assert _responses(m, "worker") + _responses(m, "pool") == 1, m
