"""HTTP/2 floods and slow clients (issue 26): each test floods or stalls a real server over a real socket and
checks how the connection ends (GOAWAY and its code, a refused or reset stream) and that the server's memory
and CPU stay bounded. Every flood is bounded in count and every wait in time."""

from __future__ import annotations

import json
import time

import h2.errors
import h2.events
import psutil
import pytest
from h2.settings import SettingCodes
from hpack import Encoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
)

from tests.h2client import H2Client, read_frames
from tests.support import Server

pytestmark = pytest.mark.timeout(60)

APP = "tests.apps.h2:app"
CALM = h2.errors.ErrorCodes.ENHANCE_YOUR_CALM
RSS_BOUND = 32 << 20  # what a flood may add to the server's resident memory
CPU_BOUND = 5.0  # seconds of server CPU a flood may cost


@pytest.fixture(scope="module")
def srv():
    with Server(APP, "--port", "0") as server:
        yield server


class Cost:
    """The server's RSS growth and CPU seconds across a ``with`` block."""

    def __init__(self, server: Server) -> None:
        self.proc = psutil.Process(server.pid)

    def __enter__(self):
        self.rss = self.proc.memory_info().rss
        times = self.proc.cpu_times()
        self.cpu = times.user + times.system
        return self

    def __exit__(self, *exc):
        times = self.proc.cpu_times()
        self.cpu_used = times.user + times.system - self.cpu
        self.rss_grown = self.proc.memory_info().rss - self.rss

    def check(self) -> None:
        assert self.rss_grown < RSS_BOUND, f"server RSS grew {self.rss_grown >> 20} MiB"
        assert self.cpu_used < CPU_BOUND, f"server spent {self.cpu_used:.1f} s CPU"


def request_block(encoder: Encoder, path: str = "/") -> bytes:
    return encoder.encode([(b":method", b"GET"), (b":path", path.encode()), (b":scheme", b"http"),
                           (b":authority", b"t")])


def calls(server: Server) -> int:
    client = H2Client(server.addr)
    try:
        return json.loads(client.response(client.request("/scope"))[1])["calls"]
    finally:
        client.close()


def send_until_closed(client: H2Client, chunks) -> int:
    """Send the flood chunk by chunk; stops when the server stopped taking it. Returns the chunks sent."""
    sent = 0
    for chunk in chunks:
        try:
            client.sock.sendall(chunk)
        except OSError:  # (reset or broken pipe: the server closed, as it should)
            break
        sent += 1
    return sent


def goaway_of(frames) -> GoAwayFrame:
    found = [f for f in frames if isinstance(f, GoAwayFrame)]
    assert found, f"no GOAWAY among {len(frames)} frames"
    return found[-1]


def test_rapid_reset_ends_with_enhance_your_calm(srv):
    """CVE-2023-44487: HEADERS then RST_STREAM at once, 3,000 times. The reset budget (200, then 50 a second)
    runs out: GOAWAY ENHANCE_YOUR_CALM and close; streams reset in the read that opened them never run."""
    before = calls(srv)
    client = H2Client(srv.addr)
    try:
        def batches():
            for _ in range(30):
                for _ in range(100):
                    sid = client.conn.get_next_available_stream_id()
                    client.conn.send_headers(sid, [(b":method", b"GET"), (b":path", b"/scope"), (b":scheme", b"http"),
                                                   (b":authority", b"t")], end_stream=True)
                    client.conn.reset_stream(sid, h2.errors.ErrorCodes.CANCEL)
                yield client.conn.data_to_send()

        with Cost(srv) as cost:
            send_until_closed(client, batches())
            frames, closed = read_frames(client.sock, 10)
        assert goaway_of(frames).error_code == CALM
        assert closed
        cost.check()
    finally:
        client.close()
    assert calls(srv) - before - 1 <= 260  # (the budget and its refill, not 3,000)


def test_continuation_flood_is_bounded(srv):
    """CVE-2024-27316: a header block that never ends (HEADERS, then CONTINUATION after CONTINUATION). h2 keeps
    at most 64 frames of one block: the connection ends with GOAWAY long before the 1,000 frames (16 MiB)."""
    client = H2Client(srv.addr)
    try:
        block = request_block(Encoder())
        filler = b"\x00" * 16000  # (not valid HPACK, never decoded: the block never completes)
        chunks = [HeadersFrame(1, block, flags=[]).serialize()]
        chunks += [ContinuationFrame(1, filler, flags=[]).serialize() for _ in range(1000)]
        with Cost(srv) as cost:
            sent = send_until_closed(client, chunks)
            frames, closed = read_frames(client.sock, 10)
        assert goaway_of(frames).error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR
        assert closed and sent < 1000
        cost.check()
    finally:
        client.close()


def test_oversized_header_list_and_hpack_bomb(srv):
    """A header list past SETTINGS_MAX_HEADER_LIST_SIZE (64 KiB): one 70 KB field, and an HPACK bomb (a 4 KB
    field put in the dynamic table, then referenced 100 times at one byte each). Both end the connection with a
    GOAWAY while decoding; the server keeps serving others."""
    encoder = Encoder()
    huge = encoder.encode([(b":method", b"GET"), (b":path", b"/"), (b":scheme", b"http"), (b":authority", b"t"),
                           (b"x-huge", b"a" * 70000)], huffman=False)
    frames_out = [HeadersFrame(1, huge[:16000], flags=[]).serialize()]
    for i in range(16000, len(huge), 16000):
        last = i + 16000 >= len(huge)
        frames_out.append(ContinuationFrame(1, huge[i:i + 16000], flags=["END_HEADERS"] if last else []).serialize())
    bomb_encoder = Encoder()
    bomb = bomb_encoder.encode([(b":method", b"GET"), (b":path", b"/"), (b":scheme", b"http"), (b":authority", b"t"),
                                (b"x-bomb", b"b" * 4000)], huffman=False) + b"\xbe" * 100  # (index 62: x-bomb)
    for flood in (frames_out, [HeadersFrame(1, bomb, flags=["END_HEADERS", "END_STREAM"]).serialize()]):
        client = H2Client(srv.addr)
        try:
            with Cost(srv) as cost:
                send_until_closed(client, flood)
                frames, closed = read_frames(client.sock, 10)
            assert goaway_of(frames).error_code != h2.errors.ErrorCodes.NO_ERROR
            assert closed
            assert not any(isinstance(f, HeadersFrame) for f in frames)  # no app ran for it
            cost.check()
        finally:
            client.close()
    assert calls(srv) > 0


@pytest.mark.parametrize("frame", [PingFrame(0, opaque_data=b"12345678"), SettingsFrame(0)],
                         ids=["ping", "settings"])
def test_control_frame_floods_end_with_enhance_your_calm(srv, frame):
    """CVE-2019-9512/9515: 5,000 PINGs or SETTINGS, each asking for an ACK. The budget (100, then 10 a second)
    ends the connection with ENHANCE_YOUR_CALM after about 100 ACKs, not 5,000."""
    client = H2Client(srv.addr)
    try:
        one = frame.serialize()
        with Cost(srv) as cost:
            send_until_closed(client, [one * 500 for _ in range(10)])
            frames, closed = read_frames(client.sock, 10)
        acks = [f for f in frames if type(f) is type(frame) and "ACK" in f.flags]
        assert goaway_of(frames).error_code == CALM
        assert closed and len(acks) < 200
        cost.check()
    finally:
        client.close()


def test_empty_data_frame_flood_ends_with_enhance_your_calm(srv):
    """CVE-2019-9518: 5,000 DATA frames with no payload and no END_STREAM on an open request. The budget (100,
    then 10 a second) ends the connection with ENHANCE_YOUR_CALM."""
    client = H2Client(srv.addr)
    try:
        sid = client.request("/scope-body", method="POST", end=False)
        one = DataFrame(sid, b"").serialize()
        with Cost(srv) as cost:
            send_until_closed(client, [one * 500 for _ in range(10)])
            frames, closed = read_frames(client.sock, 10)
        assert goaway_of(frames).error_code == CALM
        assert closed
        cost.check()
    finally:
        client.close()


def test_streams_past_max_concurrent_are_refused(srv):
    """SETTINGS_MAX_CONCURRENT_STREAMS is 100: the 101st stream open at once is refused (REFUSED_STREAM, no
    app call), the 100 others are answered and the connection goes on."""
    client = H2Client(srv.addr)
    try:
        client.wait_for(lambda e: isinstance(e, h2.events.RemoteSettingsChanged))
        assert client.conn.remote_settings.max_concurrent_streams == 100
        sids = [client.request("/sleep?1") for _ in range(100)]
        extra = sids[-1] + 2  # (raw: h2's client would not open it)
        client.send_raw(HeadersFrame(extra, client.conn.encoder.encode(
            [(b":method", b"GET"), (b":path", b"/scope"), (b":scheme", b"http"), (b":authority", b"t")]),
            flags=["END_HEADERS", "END_STREAM"]).serialize())
        frames, _ = read_frames(client.sock, 5, until=lambda f: f.stream_id == extra)
        refused = frames[-1]
        assert isinstance(refused, RstStreamFrame), f"stream {extra} was not refused: {refused}"
        assert refused.stream_id == extra and refused.error_code == h2.errors.ErrorCodes.REFUSED_STREAM
    finally:
        client.close()


def test_answered_streams_whose_app_runs_on_do_not_count_against_the_limit():
    """A stream answered whole whose app runs on after its response (BackgroundTasks) is closed for the client
    (RFC 9113 section 5.1.2): with 100 such streams the client may open another at once, which is answered, not
    refused (seen under h2load -c 1 -m 100 when an app's end crossed back after its response left)."""
    with Server("tests.apps.after_response:app", "--port", "0") as server:
        client = H2Client(server.addr)
        try:
            client.wait_for(lambda e: isinstance(e, h2.events.RemoteSettingsChanged))
            sids = [client.request("/inline?t=3") for _ in range(100)]
            for sid in sids:  # every response whole; the apps sleep 3 s on
                headers, body = client.response(sid)
                assert headers[b":status"] == b"200" and body == b"answered"
            extra = client.request("/inline")  # (h2's client counts 0 streams open now)
            headers, body = client.response(extra, timeout=2.5)  # (AssertionError if reset: REFUSED_STREAM)
            assert headers[b":status"] == b"200" and body == b"answered"
        finally:
            client.close()


def test_idle_connection_and_slow_headers_time_out():
    """No stream for --timeout-keep-alive: GOAWAY NO_ERROR, closed. A header block still incomplete after
    --timeout-request-head (shorter here than keep-alive): GOAWAY, closed."""
    with Server(APP, "--port", "0", "--timeout-keep-alive", "1", "--timeout-request-head", "1") as server:
        client = H2Client(server.addr)
        try:
            started = time.monotonic()
            frames, closed = read_frames(client.sock, 5)
            took = time.monotonic() - started
            assert goaway_of(frames).error_code == h2.errors.ErrorCodes.NO_ERROR and closed
            assert 0.8 < took < 3.5, took
        finally:
            client.close()
    with Server(APP, "--port", "0", "--timeout-keep-alive", "30", "--timeout-request-head", "1") as server:
        client = H2Client(server.addr)
        try:
            client.send_raw(HeadersFrame(1, request_block(Encoder()), flags=[]).serialize())  # no END_HEADERS
            started = time.monotonic()
            frames, closed = read_frames(client.sock, 10)
            took = time.monotonic() - started
            assert goaway_of(frames).error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR and closed
            assert 0.8 < took < 3.5, took
        finally:
            client.close()


def test_zero_window_reader_is_cut_after_write_stall():
    """A client that opens no window (INITIAL_WINDOW_SIZE 0, no WINDOW_UPDATE): the response waits, then after
    --timeout-write-stall the stream is reset (CANCEL) and the app's send fails; the connection stays usable."""
    with Server(APP, "--port", "0", "--timeout-write-stall", "1") as server:
        client = H2Client(server.addr, settings={SettingCodes.INITIAL_WINDOW_SIZE: 0})
        try:
            with Cost(server) as cost:
                sid = client.request(f"/big?{8 << 20}")
                started = time.monotonic()
                frames, _ = read_frames(client.sock, 8, until=lambda f: f.stream_id == sid and f.type == 0x3)
                took = time.monotonic() - started
            reset = frames[-1]
            assert isinstance(reset, RstStreamFrame), f"stream {sid} not reset within 8 s: {reset}"
            assert reset.stream_id == sid and reset.error_code == h2.errors.ErrorCodes.CANCEL, frames[-3:]
            assert 0.8 < took < 4.0, took
            cost.check()
            client.conn.receive_data(b"".join(f.serialize() for f in frames))  # (keep the client's state)
            headers, _ = client.response(client.request("/", method="HEAD"))
            assert headers[b":status"] == b"200"
        finally:
            client.close()


def test_stalled_request_body_gets_408():
    """A body the app waits for and the client stops sending: after --timeout-request-body, 408 and RST_STREAM
    (the app's receive() says http.disconnect); the connection goes on."""
    with Server(APP, "--port", "0", "--timeout-request-body", "1", "--timeout-keep-alive", "30") as server:
        client = H2Client(server.addr)
        try:
            sid = client.request("/scope-body", method="POST", body=b"x" * 100, end=False)
            started = time.monotonic()
            frames, _ = read_frames(client.sock, 8, until=lambda f: f.stream_id == sid and isinstance(
                f, RstStreamFrame))
            took = time.monotonic() - started
            client.events.extend(client.conn.receive_data(b"".join(f.serialize() for f in frames)))
            status = [dict(e.headers)[b":status"] for e in client.events
                      if isinstance(e, h2.events.ResponseReceived) and e.stream_id == sid]
            assert status == [b"408"], frames[-4:]
            assert 0.8 < took < 4.0, took
            headers, _ = client.response(client.request("/", method="HEAD"))
            assert headers[b":status"] == b"200"
        finally:
            client.close()
