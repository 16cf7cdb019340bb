"""WebSockets over HTTP/2 (RFC 8441, extended CONNECT; issue 26): a frame-level client (h2's client mode over a
real socket, WebSocket frames from wsproto's client frame layer: masked) against a real server process on
127.0.0.1. Every wait is bounded."""

from __future__ import annotations

import json
import shutil
import signal
import time

import h2.errors
import h2.events
import pytest
from h2.settings import SettingCodes
from hyperframe.frame import DataFrame
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Message, Ping, TextMessage
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import FrameProtocol
from wsproto.handshake import client_extensions_handshake

from tests.h2client import H2Client, read_frames
from tests.support import Server

pytestmark = pytest.mark.timeout(60)

APP = "tests.apps.h2ws:app"
MAX_SIZE = 262144


@pytest.fixture(scope="module")
def srv():
    with Server(APP, "--port", "0", "--ws-max-size", str(MAX_SIZE)) as server:
        yield server


def h2_client(srv, **kw) -> H2Client:
    """A connection whose server SETTINGS arrived (a client may send :protocol only after them)."""
    client = H2Client(srv.addr, **kw)
    client.wait_for(lambda e: isinstance(e, h2.events.RemoteSettingsChanged))
    return client


class WS:
    """One WebSocket on a stream of ``client``: extended CONNECT, then wsproto's client frames in DATA."""

    def __init__(self, client: H2Client, path: str, headers=(), pseudo=None) -> None:
        self.client = client
        self.conn = client.conn
        self.ws = Connection(ConnectionType.CLIENT)
        self.sid = self.conn.get_next_available_stream_id()
        fields = pseudo if pseudo is not None else [
            (b":method", b"CONNECT"), (b":protocol", b"websocket"), (b":scheme", b"http"),
            (b":path", path.encode()), (b":authority", b"test")]
        self.conn.send_headers(self.sid, [*fields, (b"sec-websocket-version", b"13"), *headers])
        client.flush()
        self.seen = 0  # client.events handled by events()

    def response(self) -> dict:
        event = self.client.wait_for(lambda e: isinstance(e, h2.events.ResponseReceived | h2.events.StreamReset)
                                     and e.stream_id == self.sid)
        if isinstance(event, h2.events.StreamReset):
            raise AssertionError(f"stream reset with {event.error_code!r}")
        return dict(event.headers)

    def accepted(self) -> None:
        status = self.response()[b":status"]
        assert status == b"200", status

    def send_bytes(self, data: bytes, end: bool = False) -> None:
        """Within the stream's and connection's windows, waiting for the server's WINDOW_UPDATEs."""
        conn = self.conn
        pos = 0
        deadline = time.monotonic() + 10
        while pos < len(data):
            n = min(len(data) - pos, conn.local_flow_control_window(self.sid), conn.max_outbound_frame_size)
            if n <= 0:
                assert time.monotonic() < deadline, "the server opened no window"
                try:
                    self.client.pump(1.0)
                except TimeoutError:
                    pass
                continue
            conn.send_data(self.sid, data[pos:pos + n])
            self.client.flush()
            pos += n
        if end:
            conn.end_stream(self.sid)
            self.client.flush()

    def send(self, event) -> None:
        self.send_bytes(self.ws.send(event))

    def next_event(self, timeout: float = 5.0):
        """The next WebSocket event from the server (messages whole)."""
        deadline = time.monotonic() + timeout
        parts = []
        while True:
            for event in self.ws.events():
                if isinstance(event, Message):
                    parts.append(event.data)
                    if event.message_finished:
                        joined = ("" if isinstance(event, TextMessage) else b"").join(parts)
                        return type(event)(data=joined)
                    continue
                return event
            event = self._next_h2(deadline)
            if isinstance(event, h2.events.DataReceived):
                self.ws.receive_data(event.data)
            elif isinstance(event, h2.events.StreamEnded):
                self.ws.receive_data(None)
            elif isinstance(event, h2.events.StreamReset):
                raise AssertionError(f"stream reset with {event.error_code!r}")

    def _next_h2(self, deadline: float):
        client = self.client
        while True:
            for i in range(self.seen, len(client.events)):
                event = client.events[i]
                if getattr(event, "stream_id", None) == self.sid and not isinstance(event, h2.events.WindowUpdated):
                    self.seen = i + 1
                    return event
            self.seen = len(client.events)
            left = deadline - time.monotonic()
            assert left > 0 and not client.closed, f"nothing from the server; saw {client.events[-6:]}"
            try:
                client.pump(left)
            except TimeoutError:
                pass

    def ended(self, timeout: float = 5.0) -> h2.events.Event:
        """The stream's end: StreamEnded or StreamReset."""
        return self.client.wait_for(lambda e: isinstance(e, h2.events.StreamEnded | h2.events.StreamReset)
                                    and e.stream_id == self.sid, timeout)


def stats(client: H2Client) -> dict:
    sid = client.request("/stats")
    _headers, body = client.response(sid)
    return json.loads(body)


def test_settings_enable_connect_protocol(srv):
    client = h2_client(srv)
    assert client.conn.remote_settings.enable_connect_protocol == 1


def test_echo_text_and_binary_scope_and_close(srv):
    client = h2_client(srv)
    ws = WS(client, "/scope?x=1")
    assert ws.response()[b":status"] == b"200"
    scope = json.loads(ws.next_event().data)
    assert scope["type"] == "websocket" and scope["http_version"] == "2" and scope["scheme"] == "ws"
    assert scope["path"] == "/scope" and scope["query_string"] == "x=1" and scope["root_path"] == ""
    assert scope["client"][0] == "127.0.0.1" and scope["server"] == ["127.0.0.1", srv.port]
    assert scope["state"] == ["ready"] and "websocket.http.response" in scope["extensions"]
    ws.send(CloseConnection(code=1000))
    event = ws.next_event()
    assert isinstance(event, CloseConnection) and event.code == 1000
    assert isinstance(ws.ended(), h2.events.StreamEnded)
    echo = WS(client, "/echo")
    assert echo.response()[b":status"] == b"200"
    echo.send(TextMessage(data="héllo"))
    assert echo.next_event() == TextMessage(data="héllo")
    echo.send(BytesMessage(data=b"\x00\xff" * 10))
    assert echo.next_event() == BytesMessage(data=b"\x00\xff" * 10)
    echo.send(CloseConnection(code=4000, reason="bye"))
    event = echo.next_event()
    assert isinstance(event, CloseConnection) and event.code == 4000
    assert isinstance(echo.ended(), h2.events.StreamEnded)
    assert stats(client)["last"] == [4000, "bye"]  # the app saw the client's code


def test_large_message_flow_control(srv):
    """A 200 KiB message is more than three stream windows: both directions wait for WINDOW_UPDATEs."""
    client = h2_client(srv)
    ws = WS(client, "/echo")
    ws.accepted()
    data = bytes(range(256)) * 800
    ws.send(BytesMessage(data=data))
    assert ws.next_event(timeout=10) == BytesMessage(data=data)


def test_subprotocol_chosen(srv):
    client = h2_client(srv)
    ws = WS(client, "/subproto", headers=[(b"sec-websocket-protocol", b"chat, superchat")])
    headers = ws.response()
    assert headers[b":status"] == b"200"
    assert headers[b"sec-websocket-protocol"] == b"chat" and headers[b"x-extra"] == b"yes"
    assert json.loads(ws.next_event().data) == ["chat", "superchat"]


def test_denials(srv):
    client = h2_client(srv)
    deny = WS(client, "/deny")
    assert deny.response()[b":status"] == b"403"
    custom = WS(client, "/response")
    headers = custom.response()
    assert headers[b":status"] == b"418" and headers[b"x-denied"] == b"1"
    custom.ended()
    body = b"".join(e.data for e in client.events
                    if isinstance(e, h2.events.DataReceived) and e.stream_id == custom.sid)
    assert body == b"no tea"


def test_server_close_code(srv):
    client = h2_client(srv)
    ws = WS(client, "/close?code=4001&reason=later")
    ws.accepted()
    event = ws.next_event()
    assert isinstance(event, CloseConnection) and (event.code, event.reason) == (4001, "later")
    ws.send(event.response())
    assert isinstance(ws.ended(), h2.events.StreamEnded)


def test_reset_mid_message_is_a_disconnect(srv):
    client = h2_client(srv)
    mark = WS(client, "/echo")  # (a clean close first: the last disconnect is not a 1006 from an earlier test)
    mark.accepted()
    mark.send(CloseConnection(code=4321, reason="mark"))
    assert isinstance(mark.next_event(), CloseConnection)
    assert stats(client)["last"] == [4321, "mark"]
    ws = WS(client, "/echo")
    ws.accepted()
    ws.send(TextMessage(data="first part", message_finished=False))
    client.conn.reset_stream(ws.sid, h2.errors.ErrorCodes.CANCEL)
    client.flush()
    deadline = time.monotonic() + 5
    while stats(client)["last"] != [1006, ""]:
        assert time.monotonic() < deadline, stats(client)
        time.sleep(0.05)


def test_connection_lost_is_a_disconnect(srv):
    """The whole connection dies (the client closes its socket mid-message): the app gets websocket.disconnect
    1006, as for a lost HTTP/1.1 peer."""
    client = h2_client(srv)
    mark = WS(client, "/echo")  # (a clean close first: the last disconnect is not a 1006 from an earlier test)
    mark.accepted()
    mark.send(CloseConnection(code=4321, reason="mark"))
    assert isinstance(mark.next_event(), CloseConnection)
    assert stats(client)["last"] == [4321, "mark"]
    ws = WS(client, "/echo")
    ws.accepted()
    ws.send(TextMessage(data="ok"))
    assert ws.next_event() == TextMessage(data="ok")
    ws.send(BytesMessage(data=b"half", message_finished=False))
    client.close()
    other = h2_client(srv)
    deadline = time.monotonic() + 5
    while stats(other)["last"] != [1006, ""]:
        assert time.monotonic() < deadline, stats(other)
        time.sleep(0.05)


def test_oversized_message_closes_1009(srv):
    client = h2_client(srv)
    ws = WS(client, "/echo")
    ws.accepted()
    proto = FrameProtocol(client=True, extensions=[])
    ws.send_bytes(proto.send_data(b"x" * (MAX_SIZE + 1)))  # one frame, more than --ws-max-size
    event = ws.next_event(timeout=10)
    assert isinstance(event, CloseConnection) and event.code == 1009, event


def test_unmasked_frame_closes_1002(srv):
    client = h2_client(srv)
    ws = WS(client, "/echo")
    ws.accepted()
    ws.send_bytes(bytes([0x81, 5]) + b"hello")  # a text frame without a mask
    event = ws.next_event()
    assert isinstance(event, CloseConnection) and event.code == 1002, event
    assert isinstance(ws.ended(), h2.events.StreamEnded)  # our side ends after the close frame


def test_app_errors_500_before_accept_1011_after(srv):
    client = h2_client(srv)
    before = WS(client, "/error")
    assert before.response()[b":status"] == b"500"
    after = WS(client, "/error-after")
    after.accepted()
    event = after.next_event()
    assert isinstance(event, CloseConnection) and event.code == 1011, event


def test_ping_flood_from_a_client_that_reads_nothing_is_bounded(srv):
    """The client's window for our DATA is 0, so no Pong can leave: the server stops parsing (and opening its
    window) once 64 KiB of Pongs wait, as over HTTP/1.1 it stops reading a peer that does not read."""
    client = h2_client(srv, settings={SettingCodes.INITIAL_WINDOW_SIZE: 0})
    ws = WS(client, "/sink")
    ws.accepted()
    conn = client.conn
    pings = ws.ws.send(Ping(payload=b"p" * 125)) * 16  # 2 KiB of masked pings
    sent = 0
    while sent < 1 << 20:
        if conn.local_flow_control_window(ws.sid) < len(pings):
            try:
                client.pump(1.0)  # (WINDOW_UPDATEs; nothing else can come)
            except TimeoutError:
                break
            continue
        conn.send_data(ws.sid, pings)
        client.flush()
        sent += len(pings)
    assert sent < 300_000, f"the server read {sent} bytes of pings it could not answer"
    assert sent > 65536  # (it did read and answer into its buffer first)


def test_keepalive_and_close_timeout():
    """--ws-ping-timeout: a client that answers no Ping is closed with 1011; --ws-close-timeout: one that
    answers no close frame has its stream reset."""
    with Server(APP, "--port", "0", "--ws-ping-interval", "0.2", "--ws-ping-timeout", "0.3",
                "--ws-close-timeout", "0.5") as server:
        client = h2_client(server)
        ws = WS(client, "/sink")
        ws.accepted()
        assert isinstance(ws.next_event(), Ping)  # (not answered)
        event = ws.next_event()
        assert isinstance(event, CloseConnection) and event.code == 1011, event
        started = time.monotonic()
        end = ws.ended(timeout=5)
        assert isinstance(end, h2.events.StreamEnded | h2.events.StreamReset), end
        assert time.monotonic() - started < 3
        mute = WS(client, "/close?code=4001")
        mute.accepted()
        event = mute.next_event()
        assert isinstance(event, CloseConnection) and event.code == 4001
        end = mute.ended(timeout=5)  # (no answer to the close)
        assert isinstance(end, h2.events.StreamReset) and end.error_code == h2.errors.ErrorCodes.CANCEL, end


def test_permessage_deflate_negotiated_and_bounded(srv):
    """RFC 7692 over h2: negotiated from sec-websocket-extensions as over HTTP/1.1; a compressed message is
    echoed, and one that inflates past --ws-max-size closes with 1009 (inflation bounded: ws_deflate.py)."""
    client = h2_client(srv)
    for data, code in ((b"abc" * 50000, None), (b"\0" * (MAX_SIZE * 4), 1009)):
        ws = WS(client, "/echo", headers=[(b"sec-websocket-extensions", b"permessage-deflate; client_max_window_bits")])
        headers = ws.response()
        assert headers[b":status"] == b"200"
        accepted = headers[b"sec-websocket-extensions"].decode()
        assert accepted.startswith("permessage-deflate")
        ws.ws = Connection(ConnectionType.CLIENT, extensions=client_extensions_handshake([accepted],
                                                                                          [PerMessageDeflate()]))
        frames = ws.ws.send(BytesMessage(data=data))
        assert len(frames) < len(data) // 100  # (compressed)
        ws.send_bytes(frames)
        event = ws.next_event(timeout=10)
        if code is None:
            assert event == BytesMessage(data=data)
        else:
            assert isinstance(event, CloseConnection) and event.code == code, event


def test_plain_connect_and_unknown_protocol_answered(srv):
    client = h2_client(srv)
    plain = WS(client, "", pseudo=[(b":method", b"CONNECT"), (b":authority", b"example.com:443")])
    assert plain.response()[b":status"] == b"501"
    other = WS(client, "", pseudo=[(b":method", b"CONNECT"), (b":protocol", b"connect-udp"),
                                   (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"test")])
    assert other.response()[b":status"] == b"501"
    _headers, body = client.response(client.request("/stats"))  # the connection goes on
    assert json.loads(body)["runs"].get("/", 0) == 0


def test_extended_connect_without_path_is_a_stream_error(srv):
    client = h2_client(srv)
    client.conn.config.validate_outbound_headers = False  # (h2 would refuse to send it)
    bad = WS(client, "", pseudo=[(b":method", b"CONNECT"), (b":protocol", b"websocket"), (b":scheme", b"http"),
                                 (b":authority", b"test")])
    event = bad.ended()
    assert isinstance(event, h2.events.StreamReset) and event.error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR
    ws = WS(client, "/echo")  # only the stream: the connection serves the next one
    assert ws.response()[b":status"] == b"200"


def test_two_websockets_and_a_get_multiplexed_each_app_once(srv):
    client = h2_client(srv)
    before = stats(client)["runs"]
    one, two = WS(client, "/multi-a"), WS(client, "/multi-b")
    get = client.request("/plain")
    one.accepted()
    two.accepted()
    _headers, body = client.response(get)
    assert body.startswith(b"plain http")
    for i in range(5):
        two.send(TextMessage(data=f"b{i}"))
        one.send(TextMessage(data=f"a{i}"))
        assert one.next_event() == TextMessage(data=f"a{i}")
        assert two.next_event() == TextMessage(data=f"b{i}")
    runs = stats(client)["runs"]
    assert runs.get("/multi-a", 0) - before.get("/multi-a", 0) == 1
    assert runs.get("/multi-b", 0) - before.get("/multi-b", 0) == 1


def test_ws_none_does_not_advertise_and_refuses():
    with Server(APP, "--port", "0", "--ws", "none") as server:
        client = H2Client(server.addr)
        event = client.wait_for(lambda e: isinstance(e, h2.events.RemoteSettingsChanged))
        assert SettingCodes.ENABLE_CONNECT_PROTOCOL not in event.changed_settings
        assert SettingCodes.MAX_CONCURRENT_STREAMS in event.changed_settings  # (the server's SETTINGS, read)
        # A client that sends :protocol anyway (h2 would refuse to: its check is off here) gets a stream error.
        client.conn.config.validate_outbound_headers = False
        ws = WS(client, "/echo")
        event = ws.ended()
        assert isinstance(event, h2.events.StreamReset) and event.error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR
        assert server.stop() == 0, server.output


def test_shutdown_closes_1001():
    """SIGTERM: the WebSocket closes with 1001 as over HTTP/1.1, the close handshake completes on the stream
    (END_STREAM), the connection closes, the server exits 0. (Raw frames after the signal: h2's client takes
    the server's GOAWAY for the connection's end and would refuse the stream's last frames.)"""
    with Server(APP, "--port", "0") as server:
        client = h2_client(server)
        ws = WS(client, "/echo")
        ws.accepted()
        ws.send(TextMessage(data="hi"))
        assert ws.next_event() == TextMessage(data="hi")
        server.signal(signal.SIGTERM)
        frames, _closed = read_frames(client.sock, 10, lambda f: isinstance(f, DataFrame) and f.stream_id == ws.sid)
        ws.ws.receive_data(frames[-1].data)
        event = next(ws.ws.events())
        assert isinstance(event, CloseConnection) and event.code == 1001
        client.send_raw(DataFrame(ws.sid, data=ws.ws.send(event.response()), flags=["END_STREAM"]).serialize())
        frames, closed = read_frames(client.sock, 10)
        assert closed
        assert any(f.stream_id == ws.sid and "END_STREAM" in f.flags for f in frames), frames
        assert server.wait(15) == 0, server.output


CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.mark.timeout(90)
@pytest.mark.skipif(CHROMIUM is None or CHROMEDRIVER is None, reason="chromium and chromium-driver are not "
                    "installed (.ci/system-deps installs them; it needs root or sudo)")
def test_chromium_opens_websocket_over_h2(tmp_path):
    """A real browser: a page over HTTPS (ALPN h2), then a WebSocket from it. Chromium uses RFC 8441 on the
    page's h2 connection once its SETTINGS enable it: the app's scope says http_version "2"."""
    import trustme
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    chain, key = tmp_path / "chain.pem", tmp_path / "key.pem"
    chain.write_bytes(b"".join(p.bytes() for p in cert.cert_chain_pems))
    cert.private_key_pem.write_to_path(str(key))
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--ignore-certificate-errors"):
        options.add_argument(arg)
    with Server(APP, "--port", "0", "--ssl-certfile", str(chain), "--ssl-keyfile", str(key)) as server:
        browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        try:
            browser.set_script_timeout(15)
            browser.get(f"https://127.0.0.1:{server.port}/page")
            assert browser.execute_script(
                "return performance.getEntriesByType('navigation')[0].nextHopProtocol") == "h2"
            scope = browser.execute_async_script("""
                const done = arguments[arguments.length - 1];
                const ws = new WebSocket(`wss://${location.host}/scope`);
                ws.onmessage = (e) => { done(e.data); ws.close(1000); };
                ws.onerror = () => done("error");
            """)
            assert scope != "error"
            scope = json.loads(scope)
            assert scope["http_version"] == "2" and scope["scheme"] == "wss" and scope["path"] == "/scope"
            echo = browser.execute_async_script("""
                const done = arguments[arguments.length - 1];
                const ws = new WebSocket(`wss://${location.host}/echo`);
                ws.onopen = () => ws.send("x".repeat(100000));
                ws.onmessage = (e) => { done(e.data.length); ws.close(1000); };
                ws.onerror = () => done("error");
            """)
            assert echo == 100000
        finally:
            browser.quit()
        assert server.stop() == 0, server.output


def test_idle_clock_starts_when_the_websocket_ends():
    """An open WebSocket keeps its connection (no idle close while it lasts, past --timeout-keep-alive); once it
    ended, the connection closes after --timeout-keep-alive (GOAWAY NO_ERROR), not sooner and not much later."""
    with Server(APP, "--port", "0", "--timeout-keep-alive", "1.5") as server:
        client = h2_client(server)
        ws = WS(client, "/echo")
        ws.accepted()
        time.sleep(2.0)  # (longer than --timeout-keep-alive)
        ws.send(TextMessage(data="still here"))
        assert ws.next_event() == TextMessage(data="still here")
        ws.send(CloseConnection(code=1000))
        assert isinstance(ws.next_event(), CloseConnection)
        client.conn.end_stream(ws.sid)
        client.flush()
        started = time.monotonic()
        event = client.goaway(timeout=6)
        took = time.monotonic() - started
        assert event.error_code == h2.errors.ErrorCodes.NO_ERROR
        assert 1.2 < took < 3.5, took


def test_echo_under_mode_async():
    """--mode async: no workers; the session and the WebSocket share the one loop as before."""
    with Server(APP, "--port", "0", "--mode", "async") as server:
        client = h2_client(server)
        ws = WS(client, "/scope")
        ws.accepted()
        assert json.loads(ws.next_event().data)["http_version"] == "2"
        echo = WS(client, "/echo")
        echo.accepted()
        echo.send(BytesMessage(data=b"x" * 100_000))
        assert echo.next_event(timeout=10) == BytesMessage(data=b"x" * 100_000)
        assert server.stop() == 0, server.output


def test_app_send_waits_for_the_window_then_write_stall_resets():
    """The app's sends respect the client's window: a client that opens none gets no DATA, the app's send waits
    (64 KiB of frames buffered at most), and after --timeout-write-stall the stream is reset CANCEL."""
    with Server(APP, "--port", "0", "--timeout-write-stall", "1") as server:
        client = h2_client(server, settings={SettingCodes.INITIAL_WINDOW_SIZE: 0})
        ws = WS(client, "/produce")  # (sends 64 KiB messages until its send fails)
        ws.accepted()
        started = time.monotonic()
        end = ws.ended(timeout=8)
        took = time.monotonic() - started
        assert isinstance(end, h2.events.StreamReset) and end.error_code == h2.errors.ErrorCodes.CANCEL, end
        assert 0.8 < took < 5, took
        assert not [e for e in client.events if isinstance(e, h2.events.DataReceived) and e.stream_id == ws.sid]
        assert server.stop() == 0, server.output
