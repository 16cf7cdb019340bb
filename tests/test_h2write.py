"""hybrid/_speedups/h2write.pyx against the h2 calls it stands for (issue 26): a response's HEADERS and one DATA
frame written in one compiled step must leave the same bytes and the same h2 state as ``send_headers`` +
``send_data`` (what hybrid/h2/session.py did before, and still does when ``send_response`` returns 0).

Two server connections are driven identically by one client; one answers through h2, the other through
``send_response`` (falling back to h2 when it returns 0, as ``H2Session.send_start`` does). Compared: the bytes
queued, the stream's state, how it closed, both flow-control windows, the HPACK context (a second response on
another stream must encode the same), and what the client makes of the bytes; an error must be the same class.
The peer's settings (window, frame size), the request's state (open, half-closed, reset) and the body's size
around the windows and the frame size are drawn. Derandomized Hypothesis (tests/conftest.py).
"""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
from h2.exceptions import H2Error
from hybrid._speedups.h2write import send_response
from hybrid._speedups.hpack_codec import Decoder, Encoder
from hypothesis import given
from hypothesis import strategies as st

from hybrid.h2.session import H2_CONFIG

REQUEST = [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "t")]
BODY_SIZES = [0, 1, 13, 99, 100, 101, 16383, 16384, 16385, 20000, 65535, 65536, 70000]


def server() -> h2.connection.H2Connection:
    conn = h2.connection.H2Connection(h2.config.H2Configuration(**H2_CONFIG))
    conn.encoder, conn.decoder = Encoder(), Decoder()
    conn.initiate_connection()
    return conn


def through_h2(conn, sid, headers, body, end, with_body) -> int:
    """The session's old steps: HEADERS (END_STREAM if nothing follows), then the body if it fits."""
    conn.send_headers(sid, headers, end_stream=end and not body)
    if not body:
        return 2
    if with_body and len(body) <= min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size):
        conn.send_data(sid, body, end_stream=end)
        return 2
    return 1


def through_h2write(conn, sid, headers, body, end, with_body) -> int:
    done = send_response(conn, sid, headers, body, end, with_body)
    return done or through_h2(conn, sid, headers, body, end, with_body)


def outcome(call, *args):
    try:
        return ("ok", call(*args))
    except H2Error as exc:
        return ("raised", type(exc))


def state(conn, sid):
    stream = conn.streams.get(sid)
    if stream is None:
        return None
    machine = stream.state_machine
    return (machine.state, machine.stream_closed_by, machine.headers_sent, machine.trailers_sent,
            stream.outbound_flow_control_window, conn.outbound_flow_control_window)


@given(
    window=st.sampled_from([0, 1, 100, 16384, 65535, 1 << 20]),
    frame_size=st.sampled_from([16384, 16385, 20000]),
    request_ends=st.booleans(),
    reset_first=st.booleans(),
    status=st.sampled_from([b"200", b"404", b"103"]),
    big_header=st.sampled_from([0, 100, 16380, 40000]),
    size=st.sampled_from(BODY_SIZES),
    end=st.booleans(),
    with_body=st.booleans(),
)
def test_same_bytes_and_state_as_h2(window, frame_size, request_ends, reset_first, status, big_header, size, end,
                                    with_body):
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.local_settings.initial_window_size = window
    client.local_settings.max_frame_size = frame_size
    client.local_settings.acknowledge()  # (in force at once: h2 sends only settings in force)
    client.max_inbound_frame_size = frame_size  # (what h2 sets when the peer acknowledges them)
    client.initiate_connection()
    ours, ref = server(), server()
    hello = client.data_to_send()
    ours.receive_data(hello)
    ref.receive_data(hello)
    greeting = ours.data_to_send()
    assert greeting == ref.data_to_send()
    client.receive_data(greeting)
    client.send_headers(1, REQUEST, end_stream=request_ends)
    if reset_first:
        client.reset_stream(1)
    request = client.data_to_send()
    ours.receive_data(request)
    ref.receive_data(request)
    assert ours.data_to_send() == ref.data_to_send()

    headers = [(b":status", status), (b"content-type", b"text/plain")]
    if big_header:
        headers.append((b"x-big", b"v" * big_header))
    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    got = outcome(through_h2write, ours, 1, headers, body, end, with_body)
    want = outcome(through_h2, ref, 1, headers, body, end, with_body)
    assert got == want
    assert state(ours, 1) == state(ref, 1)
    sent = ours.data_to_send()
    assert sent == ref.data_to_send()

    # The HPACK contexts stay in step: the next response's block is the same.
    client.send_headers(3, REQUEST, end_stream=True)
    request = client.data_to_send()
    assert outcome(ours.receive_data, request)[0] == outcome(ref.receive_data, request)[0]
    second = outcome(through_h2write, ours, 3, headers, b"ok", True, True)
    assert second == outcome(through_h2, ref, 3, headers, b"ok", True, True)
    assert state(ours, 3) == state(ref, 3)
    assert ours.data_to_send() == ref.data_to_send()

    # And the client reads what we wrote as h2's bytes: the response, its body, the end.
    if got[0] == "ok" and status != b"103":  # (after a 1xx the client would refuse the DATA: both paths sent it)
        events = client.receive_data(sent)
        kinds = [type(e) for e in events]
        if not reset_first:
            assert h2.events.ResponseReceived in kinds or h2.events.InformationalResponseReceived in kinds
            received = b"".join(e.data for e in events if isinstance(e, h2.events.DataReceived))
            assert received == (body if got[1] == 2 else b"")
            assert (h2.events.StreamEnded in kinds) == (end and got[1] == 2)


def test_a_whole_response_is_one_headers_and_one_data_frame():
    """The common case is taken by the compiled path itself (not its fallback): 2, and the frames' bytes."""
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
    client.initiate_connection()
    conn = server()
    conn.receive_data(client.data_to_send())
    conn.data_to_send()
    client.send_headers(1, REQUEST, end_stream=True)
    conn.receive_data(client.data_to_send())
    assert send_response(conn, 1, [(b":status", b"200")], b"Hello", True) == 2
    out = conn.data_to_send()
    # HEADERS: length 1 (":status 200" is static index 8: 0x88), END_HEADERS; DATA: length 5, END_STREAM.
    assert out == b"\x00\x00\x01\x01\x04\x00\x00\x00\x01\x88" + b"\x00\x00\x05\x00\x01\x00\x00\x00\x01Hello"
    assert conn.streams[1].closed
    assert conn.local_flow_control_window(1) == 65535 - 5
    # A trailers' HEADERS, an informational status: left to h2 (0), nothing queued.
    client.send_headers(3, REQUEST, end_stream=False)
    conn.receive_data(client.data_to_send())
    assert send_response(conn, 3, [(b":status", b"100")], b"", False) == 0
    assert send_response(conn, 3, [(b":status", b"200")], b"", False) == 2
    assert send_response(conn, 3, [(b"x-t", b"1")], b"", True) == 0
    assert conn.data_to_send() == b"\x00\x00\x01\x01\x04\x00\x00\x00\x03\x88"
