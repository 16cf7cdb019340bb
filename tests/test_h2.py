"""HTTP/2 (issue 26): h2c with prior knowledge and ALPN h2 over TLS, driven by real clients (curl, httpx, h2's
client mode over a raw socket) against real server processes on 127.0.0.1. Every wait is bounded."""

from __future__ import annotations

import json
import shutil
import signal
import socket
import ssl
import subprocess
import time

import h2.errors
import h2.events
import httpx
import pytest
import trustme
from h2.settings import SettingCodes
from hyperframe.frame import DataFrame, GoAwayFrame, HeadersFrame, RstStreamFrame

from tests.h2client import H2Client, read_frames
from tests.support import Server, wait_until

pytestmark = pytest.mark.timeout(60)

APP = "tests.apps.h2:app"
CURL = shutil.which("curl")


def curl_has_http2() -> bool:
    if CURL is None:
        return False
    return "HTTP2" in subprocess.run([CURL, "-V"], capture_output=True, text=True, timeout=10).stdout


needs_curl = pytest.mark.skipif(not curl_has_http2(), reason="curl with HTTP2 support is not installed")


@pytest.fixture(scope="module")
def srv():
    with Server(APP, "--port", "0") as server:
        yield server


def curl(*args: str, timeout: float = 20) -> subprocess.CompletedProcess:
    return subprocess.run([CURL, "-sS", "--max-time", "10", *args], capture_output=True, timeout=timeout)


@needs_curl
def test_curl_prior_knowledge_scope(srv):
    out = curl("--http2-prior-knowledge", "-w", "\n%{http_version}", f"{srv.url}/scope?a=1", "-H", "X-Mixed: v")
    body, version = out.stdout.rsplit(b"\n", 1)
    assert version == b"2", out
    scope = json.loads(body)
    assert scope["http_version"] == "2"
    assert scope["method"] == "GET" and scope["path"] == "/scope" and scope["query_string"] == "a=1"
    assert scope["scheme"] == "http"
    headers = scope["headers"]
    assert headers[0] == ["host", f"127.0.0.1:{srv.port}"]  # :authority stands for Host
    assert ["x-mixed", "v"] in headers  # lower-case names
    assert not any(name.startswith(":") for name, _ in headers)


def test_proxy_headers_and_request_id(srv):
    """As over HTTP/1.1: a trusted proxy's X-Forwarded-For names the client (--forwarded-allow-ips defaults
    to 127.0.0.1), and every request has hybrid's request id."""
    client = H2Client(srv.addr)
    try:
        scope = json.loads(client.response(client.request("/scope", headers=[(b"x-forwarded-for", b"203.0.113.7"),
                                                                             (b"x-forwarded-proto", b"https")]))[1])
        assert scope["client"][0] == "203.0.113.7" and scope["scheme"] == "https"
        other = json.loads(client.response(client.request("/scope"))[1])
        assert scope["request_id"] and other["request_id"] and scope["request_id"] != other["request_id"]
    finally:
        client.close()


@pytest.mark.skipif(shutil.which("nghttp") is None, reason="nghttp is not installed (Debian's nghttp2-client: "
                    ".ci/system-deps installs it)")
def test_nghttp_parallel_streams(srv):
    """nghttp (nghttp2's client) fetches three URIs over one h2c connection at once: all 200, whole bodies."""
    out = subprocess.run(["nghttp", "-ns", "-t", "10", f"{srv.url}/big?{2 << 20}", f"{srv.url}/scope",
                          f"{srv.url}/sleep?0.2"], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines() if line.strip().endswith(("/big?2097152", "/scope",
                                                                                       "/sleep?0.2"))]
    assert sorted(row[-1] for row in rows) == ["/big?2097152", "/scope", "/sleep?0.2"], out.stdout
    assert all(row[-3] == "200" for row in rows), out.stdout
    assert next(row for row in rows if row[-1] == "/big?2097152")[-2] == "2M", out.stdout


def test_app_runs_once_per_stream(srv):
    client = H2Client(srv.addr)
    try:
        first = json.loads(client.response(client.request("/scope"))[1])["calls"]
        sids = [client.request("/scope") for _ in range(5)]
        calls = sorted(json.loads(client.response(sid)[1])["calls"] for sid in sids)
        assert calls == list(range(first + 1, first + 6))  # five streams, five app calls, no more
    finally:
        client.close()


def test_httpx_multiplexes_streams_on_one_connection(srv):
    """Ten streams that each await 0.5 s finish together on one connection: their apps run as separate tasks."""
    import asyncio

    async def main():
        # (http1=False: httpx speaks h2c with prior knowledge)
        async with httpx.AsyncClient(http1=False, http2=True, base_url=srv.url, timeout=10) as client:
            started = time.monotonic()
            responses = await asyncio.gather(*(client.get("/sleep?0.5") for _ in range(10)))
            return time.monotonic() - started, responses

    took, responses = asyncio.run(main())
    assert all(r.status_code == 200 and r.http_version == "HTTP/2" and r.text == "slept" for r in responses)
    assert took < 3.0, f"10 streams of 0.5 s took {took:.2f} s: not concurrent"


def test_flow_control_both_ways(srv):
    """A 3 MiB upload echoed back as it is read and a 4 MiB download: both far past the 64 KiB default
    windows, so they only complete if WINDOW_UPDATEs are sent and honoured in both directions."""
    blob = bytes(range(256)) * (3 * 4096)
    with httpx.Client(http1=False, http2=True, base_url=srv.url, timeout=20) as client:
        echoed = client.post("/echo", content=iter([blob[i:i + 65536] for i in range(0, len(blob), 65536)]))
        assert echoed.http_version == "HTTP/2" and echoed.content == blob
        big = client.get(f"/big?{4 << 20}")
        assert big.status_code == 200 and len(big.content) == 4 << 20


def test_unread_bodies_give_the_connection_window_back(srv):
    """40 POSTs of 60,000 bytes on one connection to a route that answers without reading its body: what the app
    never read is credited back to the connection's 1 MiB receive window; else it shrinks by each body and the
    client cannot send the 18th (h2's client raises FlowControlError)."""
    client = H2Client(srv.addr)
    try:
        for _ in range(40):
            headers, _ = client.response(client.request("/", method="POST", body=b"b" * 60000))
            assert headers[b":status"] == b"200"
    finally:
        client.close()


def test_a_large_response_does_not_hold_the_other_streams(srv):
    """A small response asked for while a 16 MiB one is being sent, windows wide open: the small one ends first.
    The large body is written in 16 KiB frames with the pool's loop free between them (and between its waits for
    the socket), so the other streams' frames are not held behind its last byte. (The small request is sent once
    the large one's first DATA arrived: their apps run on a worker, so asked in the same write the small app's
    first step could, on a busy machine, come after a 1 MiB body had left whole, which says nothing about this.)"""
    client = H2Client(srv.addr, settings={SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1})
    try:
        client.conn.increment_flow_control_window(2**31 - 1 - 65535)
        client.flush()
        big = client.request(f"/big-one?{16 << 20}")  # (one message: the pool cuts it into frames)
        client.wait_for(lambda e: isinstance(e, h2.events.DataReceived) and e.stream_id == big)
        small = client.request("/scope")
        ended = []
        while len(ended) < 2:
            event = client.wait_for(lambda e: isinstance(e, h2.events.StreamEnded) and e.stream_id not in ended,
                                    timeout=20)
            ended.append(event.stream_id)
        assert ended == [small, big]
        got = sum(len(e.data) for e in client.events if isinstance(e, h2.events.DataReceived) and e.stream_id == big)
        assert got == 16 << 20
    finally:
        client.close()


def test_app_exception_before_response_is_500(srv):
    client = H2Client(srv.addr)
    try:
        headers, body = client.response(client.request("/raise"))
        assert headers[b":status"] == b"500" and body == b"Internal Server Error"
        headers, _ = client.response(client.request("/"))  # the connection goes on
        assert headers[b":status"] == b"200"
    finally:
        client.close()
    wait_for_line(srv, '"GET /raise HTTP/2" 500')  # (the access log, as for HTTP/1.1)
    wait_for_line(srv, '"GET / HTTP/2" 200')


def wait_for_line(server: Server, text: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in server.output:
        assert time.monotonic() < deadline, f"no {text!r} in the server's output"
        time.sleep(0.05)


def test_app_exception_after_whole_response_keeps_it(srv):
    """A response completed in the app's first step, then the app raises: the last body and the app's end cross to
    the pool together (onworker.run_stream): the response is whole (END_STREAM, no reset), the error is logged,
    the access log has the 200 once the end was applied."""
    client = H2Client(srv.addr)
    try:
        sid = client.request("/raise-after-response")
        headers, body = client.response(sid)
        assert headers[b":status"] == b"200" and body == b"answered"
        headers, _ = client.response(client.request("/"))  # (after it: a reset of sid would have come first)
        assert headers[b":status"] == b"200"
        assert not any(isinstance(e, h2.events.StreamReset) and e.stream_id == sid for e in client.events)
    finally:
        client.close()
    wait_for_line(srv, "boom after the response (intentional)")
    wait_for_line(srv, '"GET /raise-after-response HTTP/2" 200')


def test_response_leaves_before_an_app_that_runs_on(srv):
    """An app that answers whole in its first step, then awaits 3 s more (BackgroundTasks): its response leaves at
    once, not with the app's end (onworker.run_stream posts it alone when the step did not end the app)."""
    client = H2Client(srv.addr)
    try:
        started = time.monotonic()
        headers, body = client.response(client.request("/answer-then-sleep?3"), timeout=10)
        took = time.monotonic() - started
        assert headers[b":status"] == b"200" and body == b"answered"
        assert took < 1.5, f"the response waited {took:.2f} s for the app's end"
    finally:
        client.close()


def test_app_exception_after_start_resets_stream(srv):
    client = H2Client(srv.addr)
    try:
        sid = client.request("/raise-late")
        reset = client.wait_for(lambda e: isinstance(e, h2.events.StreamReset) and e.stream_id == sid)
        assert reset.error_code == h2.errors.ErrorCodes.INTERNAL_ERROR  # never a truncated body taken as whole
        assert not any(isinstance(e, h2.events.StreamEnded) and e.stream_id == sid for e in client.events)
    finally:
        client.close()


def test_trailers_and_head(srv):
    client = H2Client(srv.addr)
    try:
        headers, body = client.response(client.request("/trailers"))
        assert body == b"body" and headers[b"x-sum"] == b"42"
        headers, body = client.response(client.request("/", method="HEAD"))
        assert headers[b":status"] == b"200" and body == b""
    finally:
        client.close()


def test_http11_still_served_and_preface_needs_http2(srv):
    with socket.create_connection(srv.addr, timeout=5) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    with Server(APP, "--port", "0", "--http", "1.1") as only11:
        with socket.create_connection(only11.addr, timeout=5) as sock:
            sock.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            assert sock.recv(65536).startswith(b"HTTP/1.1 4")  # (--http 1.1: the preface is a bad request)


def test_sigterm_goaway_then_in_flight_finishes(srv):
    """SIGTERM: GOAWAY naming the last stream taken, that stream's response still arrives whole, a stream
    opened after the GOAWAY is refused, then the connection closes."""
    with Server(APP, "--port", "0") as server:
        client = H2Client(server.addr)
        try:
            client.response(client.request("/"))
            sid = client.request("/sleep", headers=[], end=True)
            time.sleep(0.3)  # (the app is in its sleep)
            server.signal(signal.SIGTERM)
            frames, _ = read_frames(client.sock, 5, until=lambda f: isinstance(f, GoAwayFrame))
            goaway = frames[-1]
            assert isinstance(goaway, GoAwayFrame) and goaway.last_stream_id == sid and goaway.error_code == 0
            late = sid + 2
            client.send_raw(HeadersFrame(late, client.conn.encoder.encode(
                [(b":method", b"GET"), (b":path", b"/"), (b":scheme", b"http"), (b":authority", b"t")]),
                flags=["END_HEADERS", "END_STREAM"]).serialize())
            frames, closed = read_frames(client.sock, 10)
            body = b"".join(f.data for f in frames if isinstance(f, DataFrame) and f.stream_id == sid)
            assert body == b"slept"
            assert any(isinstance(f, DataFrame) and f.stream_id == sid and "END_STREAM" in f.flags for f in frames)
            assert not any(getattr(f, "stream_id", 0) == late and isinstance(f, HeadersFrame) for f in frames)
            assert closed
        finally:
            client.close()
        assert server.wait(10) == 0


def test_sigterm_bound_cancels_a_worker_app_and_resets_its_stream():
    """An app on a worker still running at --timeout-graceful-shutdown: the shutdown waits for it (a future
    made for it then: crossing.stand_in), then cancels it and resets its stream CANCEL; the server exits."""
    with Server(APP, "--port", "0", "--timeout-graceful-shutdown", "1") as server:
        client = H2Client(server.addr)
        try:
            sid = client.request("/sleep?30", headers=[], end=True)
            time.sleep(0.3)  # (the app is in its sleep, on a worker)
            server.signal(signal.SIGTERM)
            started = time.monotonic()
            frames, _ = read_frames(client.sock, 10, until=lambda f: isinstance(f, RstStreamFrame))
            waited = time.monotonic() - started
            reset = frames[-1]
            assert isinstance(reset, RstStreamFrame) and reset.stream_id == sid, frames
            assert reset.error_code == h2.errors.ErrorCodes.CANCEL
            assert 0.3 < waited < 5, waited  # (at the bound, less what the shutdown did before: not at once)
        finally:
            client.close()
        assert server.wait(10) == 0


def test_blocking_h2_handler_leaves_http11_alone(srv):
    """An HTTP/2 handler that blocks (time.sleep in async code) runs on a worker thread, which the monitor takes
    over: HTTP/1.1 requests go on, and the report names the route and the thread (tests/test_h2_blocking.py
    checks the other HTTP/2 streams and the pool's SSE)."""
    client = H2Client(srv.addr)
    try:
        client.request("/block?1.5", flush=False)
        waiting = client.request("/sleep?0.01")
        time.sleep(0.3)  # (the handler is in its sleep)
        started = time.monotonic()
        with socket.create_connection(srv.addr, timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        assert time.monotonic() - started < 1.0  # (the blocking step has 1.2 s left)
        client.response(waiting, timeout=10)
    finally:
        client.close()
    wait_for_line(srv, "GET /block blocked")
    assert "(hybrid-worker-" in next(line for line in srv.lines if "GET /block blocked" in line)


def test_mode_async_blocking_h2_handler_stalls_the_pool():
    """--mode async has no worker threads: the streams' apps run on the pool's loop, and one that blocks
    stalls it; what holds is the report, naming the route (docs/architecture.md, "HTTP/2")."""
    with Server(APP, "--port", "0", "--mode", "async") as server:
        client = H2Client(server.addr)
        try:
            client.request("/block?0.5", flush=False)
            client.request("/sleep?0.01")  # (one write: its task exists when the blocking step ends, the cue)
            client.response(client.request("/"), timeout=10)
        finally:
            client.close()
        wait_for_line(server, "GET /block blocked the event loop of the async pool")


def test_mode_async_serves_h2c():
    with Server(APP, "--port", "0", "--mode", "async") as server:
        client = H2Client(server.addr)
        try:
            sids = [client.request("/scope") for _ in range(3)]
            assert all(json.loads(client.response(sid)[1])["http_version"] == "2" for sid in sids)
        finally:
            client.close()
        with socket.create_connection(server.addr, timeout=5) as sock:  # HTTP/1.1 beside it
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")


@needs_curl
def test_sigterm_curl_finishes_its_in_flight_request():
    """A real client across a graceful shutdown: curl's request in flight at SIGTERM gets its whole response."""
    with Server(APP, "--port", "0") as server:
        proc = subprocess.Popen([CURL, "-sS", "--max-time", "10", "--http2-prior-knowledge",
                                 f"{server.url}/sleep?1.01"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            wait_for_line(server, "h2 app: sleep 1.01 started")  # (curl's stream is in the app)
            server.signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=15)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(5)
        assert proc.returncode == 0 and out == b"slept", err
        assert server.wait(10) == 0


# -- TLS: ALPN h2 ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki-h2")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    chain, key, ca_file = d / "chain.pem", d / "key.pem", d / "ca.pem"
    chain.write_bytes(b"".join(p.bytes() for p in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(key))
    ca.cert_pem.write_to_path(str(ca_file))
    return {"authority": ca, "chain": str(chain), "key": str(key), "ca": str(ca_file)}


def tls(pki, *extra):
    return Server(APP, "--port", "0", "--ssl-certfile", pki["chain"], "--ssl-keyfile", pki["key"], *extra)


def alpn_socket(pki, server, protocols):
    ctx = ssl.create_default_context()
    pki["authority"].configure_trust(ctx)
    ctx.set_alpn_protocols(protocols)
    return ctx.wrap_socket(socket.create_connection(server.addr, timeout=5), server_hostname="127.0.0.1")


def test_alpn_prefers_h2_over_tls(pki):
    with tls(pki) as server:
        sock = alpn_socket(pki, server, ["http/1.1", "h2"])
        assert sock.selected_alpn_protocol() == "h2"
        client = H2Client(sock=sock)
        try:
            headers, body = client.response(client.request("/scope"))
            scope = json.loads(body)
            assert scope["http_version"] == "2" and scope["scheme"] == "https"
        finally:
            client.close()
        with alpn_socket(pki, server, ["http/1.1"]) as sock:  # a client without h2 still gets HTTP/1.1
            assert sock.selected_alpn_protocol() == "http/1.1"
    with tls(pki, "--http", "1.1") as server, alpn_socket(pki, server, ["h2", "http/1.1"]) as sock:
        assert sock.selected_alpn_protocol() == "http/1.1"
    with tls(pki, "--mode", "async") as server:
        client = H2Client(sock=alpn_socket(pki, server, ["h2"]))
        try:
            assert json.loads(client.response(client.request("/scope"))[1])["scheme"] == "https"
        finally:
            client.close()


@needs_curl
def test_curl_http2_over_tls(pki):
    with tls(pki) as server:
        out = curl("--http2", "--cacert", pki["ca"], "-w", "\n%{http_version}",
                   f"https://127.0.0.1:{server.port}/scope")
        body, version = out.stdout.rsplit(b"\n", 1)
        assert version == b"2", out
        assert json.loads(body)["scheme"] == "https"
        blob = b"z" * (1 << 20)
        out = subprocess.run(
            [CURL, "-sS", "--max-time", "20", "--http2", "--cacert", pki["ca"], "--data-binary", "@-",
             f"https://127.0.0.1:{server.port}/echo"], input=blob, capture_output=True, timeout=30)
        assert out.stdout == blob, out.stderr



CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.mark.timeout(90)
@pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None, reason="chromium and chromium-driver are not "
                    "installed (.ci/system-deps installs them; it needs root or sudo)")
def test_demo_page_over_h2_in_headless_chromium(pki):
    """The demo page over HTTPS in a real browser: the page, its fetch and its SSE clock travel over h2 (ALPN),
    and its WebSocket still works (over the same h2 connection since RFC 8441 is served: tests/test_h2_websocket.py
    checks that Chromium does so)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--ignore-certificate-errors"):
        options.add_argument(arg)
    with Server("--port", "0", "--ssl-certfile", pki["chain"], "--ssl-keyfile", pki["key"]) as server:
        browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        try:
            browser.get(f"https://127.0.0.1:{server.port}/")

            def until(what, predicate):
                return wait_until(what, predicate, timeout=15.0)

            assert browser.execute_script(
                "return performance.getEntriesByType('navigation')[0].nextHopProtocol") == "h2"
            text = until("the /json answer", lambda: (t := browser.find_element(By.ID, "plain").text)
                         .startswith("{") and t)
            assert json.loads(text)["server"] == "hybrid"
            protocols = browser.execute_script(
                "return performance.getEntriesByType('resource').map(e => [e.name, e.nextHopProtocol])")
            assert any(name.endswith("/json") and proto == "h2" for name, proto in protocols), protocols
            clock = lambda: browser.find_element(By.ID, "clock").text  # noqa: E731
            first = until("the first clock event", lambda: clock().startswith("20") and clock())
            until("the clock to tick", lambda: clock() != first and clock().startswith("20"))
            box = browser.find_element(By.ID, "message")
            box.clear()
            box.send_keys("hello over h2")
            browser.find_element(By.CSS_SELECTOR, "#echo button").click()
            until("the echo", lambda: browser.find_element(By.ID, "reply").text == "echo: hello over h2")
        finally:
            browser.quit()
        assert server.stop() == 0, server.output
    assert '"GET /json HTTP/2" 200' in server.output
