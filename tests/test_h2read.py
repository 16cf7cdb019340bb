"""hybrid/_speedups/h2read.pyx against h2's own reading (issue 26): ``H2Conn.receive_data`` reads a request's
HEADERS frame in C and hands every other frame to h2, so fed the same bytes, cut anywhere, it must give the
same events (their repr: type, stream, headers, flags), queue the same bytes, raise the same errors and leave
the same stream states as ``H2Connection``.

The byte streams are a client's frames made by hand (hyperframe, hpack), well-formed and not: requests with and
without END_STREAM, padded or with priority fields, header blocks continued in CONTINUATION frames, DATA,
WINDOW_UPDATE, RST_STREAM, PING, SETTINGS, a HEADERS frame on an even or an old stream id, an undecodable
HPACK block, a request with a 1xx :status, an oversized frame; between them the server answers some streams
(closing them). The reference keeps H2Conn's stream-table policy (``_open_streams``, checked on its own
below), so what is compared is the reading.
Derandomized Hypothesis (tests/conftest.py).
"""

from __future__ import annotations

import h2.config
import h2.connection
import hpack
from h2.exceptions import H2Error
from hybrid._speedups.h2read import H2Conn
from hybrid._speedups.hpack_codec import Decoder, Encoder
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from hypothesis import example, given
from hypothesis import strategies as st

from hybrid.h2.session import H2_CONFIG

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + SettingsFrame(0).serialize()


class Reference(h2.connection.H2Connection):
    """h2's reading, with H2Conn's stream-table policy (walking with h2's own ``_open_streams``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._scan_at = 32

    def _open_streams(self, remainder):
        if remainder != 1 or len(self.streams) >= self._scan_at:
            count = h2.connection.H2Connection._open_streams(self, remainder)
            self._scan_at = 2 * len(self.streams) + 32
            return count
        return len(self.streams)


def server(cls):
    conn = cls(h2.config.H2Configuration(**H2_CONFIG))
    conn.encoder, conn.decoder = Encoder(), Decoder()
    conn.initiate_connection()
    conn.data_to_send()
    return conn


request = st.tuples(
    st.just("request"), st.booleans(),
    st.sampled_from(["plain", "plain", "plain", "padded", "priority", "continued", "informational", "sized"]),
)
op = st.one_of(
    request, request, request, request,  # (requests most often: the path H2Conn reads itself)
    st.tuples(st.just("data"), st.integers(0, 9), st.integers(0, 300), st.booleans()),
    # DATA read in C: padded (h2's path, padding charged), a run of full frames past the windows
    # (FLOW_CONTROL_ERROR), a stream never opened, one with a content-length (sized) overrun or cut short.
    st.tuples(st.just("data"), st.integers(0, 9), st.integers(0, 300), st.booleans(), st.integers(0, 255)),
    st.tuples(st.just("flood"), st.integers(0, 9), st.integers(1, 6)),
    st.tuples(st.just("data_unknown"), st.integers(0, 3)),
    st.tuples(st.just("window"), st.integers(0, 9), st.integers(1, 70000)),
    st.tuples(st.just("reset"), st.integers(0, 9)),
    st.tuples(st.just("trailers"), st.integers(0, 9)),
    st.tuples(st.just("answer"), st.integers(0, 9)),
    st.sampled_from([("ping",), ("settings",), ("even",), ("bad_hpack",), ("oversized",)]),
    # The app took n body bytes (H2Conn.acknowledge_received_data): of a stream opened (0), of an id above every
    # one seen (1), of stream 0 (2), or a negative count (3).
    st.tuples(st.just("ack"), st.integers(0, 9), st.integers(0, 70000), st.integers(0, 3)),
)


def frames_for(ops):
    """[(bytes to feed, or None for the server's answer), stream index]"""
    encoder = hpack.Encoder()
    sids, steps, next_sid = [], [], 1

    def block(extra=()):
        return encoder.encode([(":method", "POST"), (":path", "/"), (":scheme", "http"), (":authority", "t"),
                               *extra])

    for kind, *args in ops:
        if kind == "request":
            end, shape = args
            f = HeadersFrame(next_sid)
            extra = {"continued": [("x-big", "v" * 300)], "informational": [(":status", "103")],
                     "sized": [("content-length", "20")],
                     # (examples only) content-lengths h2 refuses, or accepts twice when they agree
                     "bad_length": [("content-length", "2x")], "signed_length": [("content-length", "+20")],
                     "two_lengths": [("content-length", "20"), ("content-length", "21")],
                     "same_lengths": [("content-length", "20"), ("content-length", "20")]}.get(shape, [])
            data = block(extra)
            if end:
                f.flags.add("END_STREAM")
            if shape == "padded":
                f.flags.add("PADDED")
                f.pad_length = 3
            if shape == "priority":
                f.flags.add("PRIORITY")
                f.depends_on, f.stream_weight = 0, 15
            if shape == "continued":
                f.data = data[:40]
                c1, c2 = ContinuationFrame(next_sid), ContinuationFrame(next_sid)
                c1.data, c2.data = data[40:100], data[100:]
                c2.flags.add("END_HEADERS")
                steps.append(f.serialize() + c1.serialize() + c2.serialize())
            else:
                f.data = data
                f.flags.add("END_HEADERS")
                steps.append(f.serialize())
            sids.append(next_sid)
            next_sid += 2
        elif kind == "ack":
            index, size, mode = args
            sid = (sids[index % len(sids)] if sids else 1) if mode in (0, 3) else (next_sid if mode == 1 else 0)
            steps.append(("ack", sid, -1 if mode == 3 else size))
        elif kind == "data_unknown":  # on stream 0 (by hand: hyperframe refuses it), or an odd id never opened
            zero = b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x"
            steps.append(DataFrame(next_sid + 2 * (args[0] - 1), data=b"x").serialize() if args[0] else zero)
        elif kind in ("data", "window", "reset", "trailers", "answer", "flood"):
            if not sids:
                continue
            sid = sids[args[0] % len(sids)]
            if kind == "data":
                f = DataFrame(sid, data=b"d" * args[1])
                if args[2]:
                    f.flags.add("END_STREAM")
                if len(args) > 3:
                    f.flags.add("PADDED")
                    f.pad_length = args[3]
            elif kind == "flood":  # full frames: the fourth runs past a 65,535-byte window
                steps.append(DataFrame(sid, data=b"f" * 16384).serialize() * args[1])
                continue
            elif kind == "window":
                f = WindowUpdateFrame(sid if args[1] % 3 else 0, window_increment=args[1])
            elif kind == "reset":
                f = RstStreamFrame(sid, error_code=8)
            elif kind == "trailers":
                f = HeadersFrame(sid, data=encoder.encode([("x-t", "1")]))
                f.flags.add("END_HEADERS")
                f.flags.add("END_STREAM")
            else:
                steps.append(sid)
                continue
            steps.append(f.serialize())
        elif kind == "ping":
            steps.append(PingFrame(0, opaque_data=b"12345678").serialize())
        elif kind == "settings":
            steps.append(SettingsFrame(0, settings={4: 1000}).serialize())
        elif kind == "even":
            steps.append(HeadersFrame(next_sid + 1, data=block(), flags=["END_HEADERS"]).serialize())
        elif kind == "bad_hpack":
            steps.append(HeadersFrame(next_sid, data=b"\xff\xff\xff\xff", flags=["END_HEADERS"]).serialize())
        elif kind == "bomb":  # (examples only) a small block naming a 4 KB dynamic-table entry 20 times: > 64 KiB
            big = [("x-bomb", "b" * 4000)]
            steps.append(HeadersFrame(next_sid, data=block(big), flags=["END_HEADERS", "END_STREAM"]).serialize())
            sids.append(next_sid)
            next_sid += 2
            steps.append(HeadersFrame(next_sid, data=block(big * 20), flags=["END_HEADERS"]).serialize())
        else:
            steps.append(b"\x00\x40\x01\x01\x04\x00\x00\x00" + bytes([next_sid]) + b"\x00" * 16385)
    return steps


def feed(conn, data):
    try:
        return ("events", repr(conn.receive_data(data)))
    except H2Error as exc:
        return ("raised", type(exc), exc.error_code if hasattr(exc, "error_code") else None)


def answer(conn, sid):
    try:
        conn.send_headers(sid, [(b":status", b"200")])
        conn.send_data(sid, b"ok", end_stream=True)
        return "answered"
    except H2Error as exc:
        return ("raised", type(exc))


def ack(conn, sid, size):
    """The app took ``size`` bytes of stream ``sid``'s body: what acknowledging them did, and the connection's
    window manager after it (the streams' are in ``table``)."""
    try:
        outcome = ("returned", conn.acknowledge_received_data(size, sid))
    except (H2Error, ValueError) as exc:
        outcome = ("raised", type(exc), str(exc))
    return outcome, vars(conn._inbound_flow_control_window_manager)


def stream_vars(conn, stream):
    """Every attribute of h2's stream object, its state machine's and its inbound window manager's (the config:
    the connection's own), so a stream made in C is h2's to the last field."""
    fields = dict(vars(stream))
    assert fields.pop("config") is conn.config
    fields["state_machine"] = (type(stream.state_machine), vars(stream.state_machine))
    fields["_inbound_window_manager"] = (type(stream._inbound_window_manager), vars(stream._inbound_window_manager))
    return type(stream), fields


def table(conn):
    return (conn.highest_inbound_stream_id, conn.state_machine.state, conn.outbound_flow_control_window,
            conn.inbound_flow_control_window,
            sorted((sid, s.state_machine.state, s.state_machine.stream_closed_by, s.outbound_flow_control_window,
                    s.inbound_flow_control_window, s.max_outbound_frame_size, s._expected_content_length)
                   for sid, s in conn.streams.items()),
            dict(conn._closed_streams), sorted((sid, stream_vars(conn, s)) for sid, s in conn.streams.items()))


H2LOAD = [("request", True, "plain")] * 8 + [("answer", 0), ("window", 1, 300), ("request", True, "plain"),
                                           ("request", False, "plain"), ("data", 9, 10, True)]

# h2load -d: requests with a content-length, each body a DATA frame with END_STREAM, some in the same read.
H2LOAD_POST = ([("request", False, "sized")] * 4 + [("data", i, 20, True) for i in range(4)]
               + [("answer", 0), ("request", False, "sized"), ("data", 4, 20, True)])


@given(ops=st.lists(op, min_size=1, max_size=25), cuts=st.lists(st.integers(0, 4000), max_size=3),
       whole_preface=st.booleans())
@example(ops=H2LOAD, cuts=[], whole_preface=False)
@example(ops=H2LOAD_POST, cuts=[], whole_preface=False)
@example(ops=[*H2LOAD_POST, *[("ack", i, 20, 0) for i in range(5)], ("ack", 9, 20, 1), ("ack", 0, 20, 2),
              ("ack", 0, 20, 3)], cuts=[], whole_preface=False)  # none due; unknown, zero and negative
@example(ops=[("request", False, "plain"), ("request", False, "plain"), ("flood", 0, 3), ("ack", 0, 40000, 0),
              ("flood", 1, 3), ("ack", 1, 49152, 0), ("ack", 0, 9152, 0)], cuts=[], whole_preface=False)
# (a stream's WINDOW_UPDATE, then the connection's too: each past half its window)
@example(ops=[("request", False, "plain"), ("flood", 0, 3), *[("data", 0, 300, False)] * 54, ("data", 0, 183, False),
              ("ack", 0, 2000, 0)], cuts=[], whole_preface=False)
# (both windows exactly used up: 2,000 bytes taken are under half a window but over 1,024, so both are due)
@example(ops=[("request", False, "sized"), ("data", 0, 30, False)], cuts=[], whole_preface=False)  # > length
@example(ops=[("request", False, "sized"), ("data", 0, 10, True)], cuts=[], whole_preface=False)  # < length
@example(ops=[("request", True, "plain"), ("data", 0, 5, False)], cuts=[], whole_preface=False)  # client ended
@example(ops=[("request", True, "plain"), ("answer", 0), ("data", 0, 5, False)], cuts=[], whole_preface=False)
@example(ops=[("request", False, "plain"), ("answer", 0), ("data", 0, 5, True)], cuts=[], whole_preface=False)
@example(ops=[("request", False, "plain"), ("flood", 0, 5)], cuts=[], whole_preface=False)  # the stream's window
@example(ops=[("request", False, "plain"), ("request", False, "plain"), ("flood", 0, 3), ("flood", 1, 3)],
         cuts=[], whole_preface=False)  # the connection's window
@example(ops=[("request", False, "plain"), ("data", 0, 9, True, 200)], cuts=[], whole_preface=False)  # padded
@example(ops=[("request", True, "plain"), ("request", True, "informational")], cuts=[], whole_preface=False)
@example(ops=[("request", True, "plain"), ("bad_hpack",)], cuts=[], whole_preface=False)  # HPACK error, in C
@example(ops=[("request", True, "plain"), ("bomb",)], cuts=[], whole_preface=False)  # header list over the limit
@example(ops=[("settings",), ("request", True, "plain"), ("request", False, "plain")], cuts=[],
         whole_preface=False)  # the peer's window for new streams (the second request: read in C)
# (a connection's first request takes h2's path: each of these is a second one, read in C)
@example(ops=[("request", True, "plain"), ("request", False, "bad_length")], cuts=[], whole_preface=False)
@example(ops=[("request", True, "plain"), ("request", False, "signed_length")], cuts=[], whole_preface=False)
@example(ops=[("request", True, "plain"), ("request", False, "two_lengths")], cuts=[], whole_preface=False)
@example(ops=[("request", True, "plain"), ("request", False, "same_lengths"), ("data", 1, 20, True)], cuts=[],
         whole_preface=False)
@example(ops=[("request", True, "plain"), ("request", False, "same_lengths"), ("data", 1, 19, True)], cuts=[],
         whole_preface=False)
def test_same_events_bytes_and_errors_as_h2(ops, cuts, whole_preface):
    ours, ref = server(H2Conn), server(Reference)
    steps = frames_for(ops)
    # The preface alone, or with the first frames (the first read of a connection carries both).
    stream = PREFACE if whole_preface else b""
    reads = []
    for step in steps:
        if not isinstance(step, bytes):  # (the server's answer or an acknowledgement: between reads)
            reads.append(stream)
            reads.append(step)
            stream = b""
        else:
            stream += step
    reads.append(stream)
    if not whole_preface:
        reads.insert(0, PREFACE)
    # Cut the byte runs anywhere (a frame split across reads).
    pieces = []
    for read in reads:
        if not isinstance(read, bytes):
            pieces.append(read)
            continue
        points = sorted({c % (len(read) + 1) for c in cuts}) if read else []
        last = 0
        for point in [*points, len(read)]:
            pieces.append(read[last:point])
            last = point
    for piece in pieces:
        if isinstance(piece, int):
            assert answer(ours, piece) == answer(ref, piece)
        elif isinstance(piece, tuple):
            assert ack(ours, *piece[1:]) == ack(ref, *piece[1:])
        else:
            got, want = feed(ours, piece), feed(ref, piece)
            assert got == want
        assert ours.data_to_send() == ref.data_to_send()
        assert table(ours) == table(ref)
        if isinstance(piece, bytes) and got[0] == "raised":
            break


def test_the_stream_table_stays_bounded_and_the_count_never_low():
    """The walk over every stream happens once the table doubled: closed streams are still forgotten (the table
    stays within twice the most streams open at once + 33: the walk's threshold, plus the new stream) and the
    count is never below the open streams."""
    conn = server(H2Conn)
    conn.receive_data(PREFACE)
    encoder = hpack.Encoder()
    request = [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "t")]
    open_ids, peak = [], 0
    for sid in range(1, 2001, 2):
        frame = HeadersFrame(sid, data=encoder.encode(request), flags=["END_HEADERS", "END_STREAM"])
        conn.receive_data(frame.serialize())
        open_ids.append(sid)
        peak = max(peak, len(open_ids))
        assert conn.open_inbound_streams >= len(open_ids)
        if len(open_ids) > 10:  # ten in flight: answer the oldest
            done = open_ids.pop(0)
            conn.send_headers(done, [(b":status", b"204")], end_stream=True)
        assert len(conn.streams) <= 2 * peak + 33
    conn.data_to_send()


def test_the_walk_over_the_streams_is_h2s():
    """The walk (``_open_streams`` once the table doubled) against h2's own on the same streams: the count of
    open ones for either parity, the closed ones moved to ``_closed_streams`` in order with how each closed,
    the oldest forgotten past its size limit (3 here)."""
    conns = [server(H2Conn), server(H2Conn)]
    request = [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "t")]
    for conn in conns:
        encoder = hpack.Encoder()  # (one per connection: its table follows what it sent)
        conn._closed_streams._size_limit = 3
        conn._scan_at = 10**9  # (no walk while they are made)
        conn.receive_data(PREFACE)
        for sid in range(1, 80, 2):  # open, half-closed either way, closed by an end or by a reset
            conn.receive_data(HeadersFrame(sid, data=encoder.encode(request),
                                           flags=["END_HEADERS"] + (["END_STREAM"] if sid % 3 else [])).serialize())
            if sid % 7 == 0:
                conn.reset_stream(sid)
            elif sid % 5 == 0:
                conn.send_headers(sid, [(b":status", b"204")], end_stream=True)
            elif sid % 11 == 0:
                conn.send_headers(sid, [(b":status", b"200")])
        conn.data_to_send()
    ours, ref = conns
    closed = sum(1 for s in ours.streams.values() if s.closed)
    assert closed > 3 and any(s.open for s in ours.streams.values())
    for remainder in (1, 0, 1):
        ours._scan_at = 0  # (walk now)
        assert ours._open_streams(remainder) == h2.connection.H2Connection._open_streams(ref, remainder)
        assert list(ours.streams) == list(ref.streams)
        assert list(ours._closed_streams.items()) == list(ref._closed_streams.items())
        assert table(ours) == table(ref)


@given(cut=st.integers(0, 60), bad=st.integers(-1, 23))
def test_the_preamble_and_the_frames_after_it_in_one_read(cut, bad):
    """The preamble is h2's to check (a wrong byte anywhere: its ProtocolError, and no GOAWAY queued), and the
    frames that follow it in the same read (a connection's first requests) are read in C with the same events,
    bytes and stream states as h2's, however the bytes are cut."""
    encoder = hpack.Encoder()
    block = encoder.encode([(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "t")])
    raw = bytearray(PREFACE + b"".join(
        HeadersFrame(sid, data=block, flags=["END_HEADERS", "END_STREAM"]).serialize() for sid in (1, 3, 5)))
    if bad >= 0:
        raw[bad] ^= 0x20
    raw = bytes(raw)
    ours, ref = server(H2Conn), server(Reference)
    for piece in (raw[:cut], raw[cut:]):
        got, want = feed(ours, piece), feed(ref, piece)
        assert got == want
        assert ours.data_to_send() == ref.data_to_send()
        assert table(ours) == table(ref)
        if got[0] == "raised":
            break
    if bad < 0:
        assert table(ours)[4] and [s for s, *_ in table(ours)[4]] == [1, 3, 5]  # (the three requests were read)
