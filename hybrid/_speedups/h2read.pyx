# cython: language_level=3
"""h2's connection with its frame reading compiled for the frame that starts every request (issue 26).

Why: per request h2 built a hyperframe object for the HEADERS frame (its Flags set, a memoryview per field),
made its repr() for a trace log that is off, dispatched it, and counted the open streams by walking every
stream it holds (so a connection with 100 streams in flight paid 100 steps per new one). ``H2Conn`` cuts the
bytes into frames here; a HEADERS frame that opens a new stream, whole (END_HEADERS, no padding, no priority
fields), within the frame size, on an open connection goes straight to what h2's ``_receive_headers_frame``
does for it, in its order and with its own calls: the HPACK block decoded (``_decode_headers``: its errors),
the stream created (as ``_begin_new_stream`` makes it, without its three ``__init__`` frames; its id checks
made first), ``receive_headers`` on it (the stream's state machine, the RequestReceived/StreamEnded events, the
content-length). An unpadded DATA frame within the frame size
on a stream h2 holds in OPEN or HALF_CLOSED_LOCAL goes to what ``_receive_data_frame`` and ``H2Stream.receive_data``
do for it (``_request_data``: both inbound windows charged, FlowControlError past them; RECV_DATA and END_STREAM
stepped; the content-length tracked). Every other frame, and every byte once a
header block is left open, goes through h2's own FrameBuffer and ``_receive_frame``, one frame at a time, so
their order and errors are h2's. The connection's state machine is not stepped for that HEADERS frame: in
SERVER_OPEN, RECV_HEADERS and RECV_DATA lead to SERVER_OPEN and run nothing (any other state takes h2's path).
The body's bytes an app took go back to the windows (``acknowledge_received_data``) with h2's arithmetic in C.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.dict cimport PyDict_Size


cdef extern from "Python.h":
    int PyODict_SetItem(object od, object key, object item) except -1

from h2.connection import ConnectionState, H2Connection
from h2.exceptions import (
    DenialOfServiceError,
    InvalidBodyLengthError,
    NoSuchStreamError,
    ProtocolError,
    StreamClosedError,
    StreamIDTooLowError,
    TooManyStreamsError,
)
from hpack.exceptions import HPACKError, OversizedHeaderListError
from h2.errors import ErrorCodes
from h2.settings import SettingCodes
from h2.stream import STREAM_OPEN, H2Stream, H2StreamStateMachine, StreamInputs, StreamState
from h2.utilities import SizeLimitDict
from h2.windows import LARGEST_FLOW_CONTROL_WINDOW, WindowManager
from hyperframe.exceptions import InvalidPaddingError
from hyperframe.frame import RstStreamFrame, WindowUpdateFrame

from hybrid._speedups.h2machine cimport Steps, new_plain
from hybrid._speedups.hpack_codec cimport Decoder

cdef object SERVER_OPEN = ConnectionState.SERVER_OPEN
cdef Steps RECV_HEADERS = Steps(StreamInputs.RECV_HEADERS)
cdef Steps RECV_END_STREAM = Steps(StreamInputs.RECV_END_STREAM)
cdef Steps RECV_DATA = Steps(StreamInputs.RECV_DATA)
# The states whose RECV_DATA h2 steps without error (OPEN, HALF_CLOSED_LOCAL); any other goes to h2's path.
cdef object S_OPEN = StreamState.OPEN
cdef object S_HALF_CLOSED_LOCAL = StreamState.HALF_CLOSED_LOCAL

cdef enum:
    DATA = 0x0
    HEADERS = 0x1
    END_STREAM = 0x1
    END_HEADERS = 0x4
    PADDED = 0x8
    PRIORITY = 0x20


cdef object INITIAL_WINDOW_SIZE = SettingCodes.INITIAL_WINDOW_SIZE
cdef object MAX_CONCURRENT_STREAMS = SettingCodes.MAX_CONCURRENT_STREAMS
cdef object NO_STREAM_LIMIT = 2**32 + 1  # (h2's Settings.max_concurrent_streams without the setting)


cdef object _setting(settings, code, default):
    """``settings[code]`` (``default`` None: its KeyError) or ``settings.get(code, default)``, read from h2's
    ``Settings`` storage as its ``__getitem__`` does (the first of the values in flight; None: not in force):
    the properties went through three Python calls, and a missing setting through a KeyError caught, per
    request."""
    storage = settings._settings
    values = (<dict>storage).get(code) if type(storage) is dict else storage.get(code)  # (dict: no method call)
    if values is not None:
        value = values[0]
        if value is not None:
            return value
    if default is None:
        raise KeyError(code)
    return default


cdef object S_IDLE = StreamState.IDLE
cdef object S_CLOSED = StreamState.CLOSED
cdef list _STREAM_OPEN = list(STREAM_OPEN)  # (h2's table: open in any sense, by state)


cdef Py_ssize_t _walk(conn, int remainder) except -1:
    """h2's ``H2Connection._open_streams``: the open streams with ``stream_id % 2 == remainder`` counted, the
    closed ones moved to ``_closed_streams`` (how each was closed, the oldest forgotten past its size limit), in
    its order, with the stream's ``open``/``closed``/``closed_by`` and the dict's ``__setitem__`` read here,
    not through a Python frame each per stream (OrderedDict's own ``__setitem__`` is ``PyODict_SetItem``: called
    directly, not through its slot wrapper, ~1,400 instructions a closed stream)."""
    cdef Py_ssize_t count = 0, limit
    cdef list to_delete = []
    streams = conn.streams
    if type(streams) is not dict:  # (not h2's own table: h2's own walk)
        return H2Connection._open_streams(conn, remainder)
    cdef dict table = <dict>streams
    for stream_id, stream in table.items():
        machine = stream.state_machine
        state = machine.state
        if _STREAM_OPEN[<Py_ssize_t>state] and stream_id % 2 == remainder:
            count += 1
        elif state is S_CLOSED:
            to_delete.append((stream_id, machine))  # (its machine kept: read once)
    if not to_delete:
        return count
    closed = conn._closed_streams
    if type(closed) is not SizeLimitDict:
        for stream_id, machine in to_delete:
            del table[stream_id]
            closed[stream_id] = machine.stream_closed_by
        return count
    size_limit = closed._size_limit  # (read once: popping the oldest entries does not change it)
    limit = size_limit if size_limit is not None else -1
    for stream_id, machine in to_delete:
        del table[stream_id]
        PyODict_SetItem(closed, stream_id, machine.stream_closed_by)
        if limit >= 0:
            while PyDict_Size(closed) > limit:
                closed.popitem(last=False)
    return count


cdef object _open_count(conn, remainder):
    """``H2Conn._open_streams`` (its docstring says why), callable without a method call."""
    streams = conn.streams
    if remainder != 1 or len(streams) >= conn._scan_at:
        count = _walk(conn, remainder)
        conn._scan_at = 2 * len(streams) + 32
        return count
    return len(streams)


cdef object _new_stream(sid, config, inbound, outbound, max_frame):
    """``H2Stream(sid, config=config, inbound_window_size=inbound, outbound_window_size=outbound)`` with its
    ``max_outbound_frame_size`` set, as h2's ``_begin_new_stream`` makes it: the same attributes, and its state
    machine's and window manager's, with the values their ``__init__``s give them, without those three Python
    frames per request. A window over h2's largest goes to h2's constructor (its assertion)."""
    if inbound > LARGEST_FLOW_CONTROL_WINDOW:
        stream = H2Stream(sid, config=config, inbound_window_size=inbound, outbound_window_size=outbound)
        stream.max_outbound_frame_size = max_frame
        return stream
    # (attributes set one by one, in __init__'s order: the instances keep CPython's shared-key layout, which
    # h2's attribute reads are specialized for; a dict assigned whole made every later read slower)
    machine = new_plain(H2StreamStateMachine)
    machine.state = S_IDLE
    machine.stream_id = sid
    machine.client = None
    machine.headers_sent = None
    machine.trailers_sent = None
    machine.headers_received = None
    machine.trailers_received = None
    machine.stream_closed_by = None
    stream = new_plain(H2Stream)
    stream.state_machine = machine
    stream.stream_id = sid
    stream.max_outbound_frame_size = None
    stream.request_method = None
    stream.outbound_flow_control_window = outbound
    window = new_plain(WindowManager)
    window.max_window_size = inbound
    window.current_window_size = inbound
    window._bytes_processed = 0
    stream._inbound_window_manager = window
    stream._expected_content_length = None
    stream._actual_content_length = 0
    stream._authority = None
    stream.config = config
    stream.max_outbound_frame_size = max_frame
    return stream


cdef object _content_length(stream, headers):
    """h2's ``H2Stream._initialize_content_length`` (the same checks, errors and messages), without its Python
    frame: the expected body length from the request's content-length fields."""
    if stream.request_method == b"HEAD":
        stream._expected_content_length = 0
        return
    content_length = None
    for h in headers:  # (read by the tuple's slots: hpack's HeaderTuple unpacks through generic iteration)
        n = (<tuple>h)[0]
        v = (<tuple>h)[1]
        if n == b"content-length":
            if not v.isdigit():  # (RFC 9110's 1*DIGIT)
                raise ProtocolError(f"Invalid content-length header: {v!r}")
            try:
                parsed = int(v, 10)
            except ValueError as err:
                raise ProtocolError(f"Invalid content-length header: {v!r}") from err
            if content_length is None:
                content_length = parsed
            elif parsed != content_length:
                raise ProtocolError(f"Conflicting content-length headers: {content_length} and {parsed}")
    stream._expected_content_length = content_length


cdef object _track_length(stream, n, bint end_stream):
    """h2's ``H2Stream._track_content_length``, without its Python frame: the body received so far against
    the content-length (InvalidBodyLengthError past it, or short of it at END_STREAM)."""
    actual = stream._actual_content_length + n
    stream._actual_content_length = actual
    expected = stream._expected_content_length
    if expected is not None:
        if expected < actual:
            raise InvalidBodyLengthError(expected, actual)
        if end_stream and expected != actual:
            raise InvalidBodyLengthError(expected, actual)


cdef object _decode_headers(decoder, bytes block):
    """h2's ``_decode_headers`` (h2/connection.py), its errors translated the same way, without its Python
    frame."""
    try:
        if type(decoder) is Decoder:  # (ours, as H2Session installs it: called in C)
            return (<Decoder>decoder).decode(block, True)
        return decoder.decode(block, raw=True)
    except OversizedHeaderListError as e:
        raise DenialOfServiceError(f"Oversized header block: {e}") from e
    except (HPACKError, IndexError, TypeError, UnicodeDecodeError) as e:
        raise ProtocolError(f"Error decoding header block: {e}") from e


cdef bint _informational(list headers):
    """h2's is_informational_response: a :status 1xx among the leading pseudo-headers (h2 then steps another
    input, which a request's stream refuses: its path raises its error)."""
    for h in headers:
        name = (<tuple>h)[0]
        value = (<tuple>h)[1]
        if not (<bytes>name).startswith(b":"):
            return False
        if name == b":status":
            return (<bytes>value).startswith(b"1")
    return False


cdef list _request_headers(conn, sid, bytes block, end_stream):
    """h2's ``_receive_headers_frame`` for a HEADERS frame that opens stream ``sid`` (checked by the caller:
    odd, above every stream seen, the connection open), without the frame object."""
    value = _open_count(conn, 1)  # (open_inbound_streams, without the property's or the method's call)
    local = conn.local_settings
    limit = _setting(local, MAX_CONCURRENT_STREAMS, NO_STREAM_LIMIT)
    if value + 1 > limit:
        raise TooManyStreamsError(f"Max inbound streams is {limit}, {value} open")
    headers = _decode_headers(conn.decoder, block)
    # h2's _begin_new_stream, its checks made by the caller (odd, above the highest inbound id) and its
    # debug logging (to h2's no-op logger) left out: the stream with both windows and the frame size.
    stream = _new_stream(sid, conn.config, _setting(local, INITIAL_WINDOW_SIZE, None),
                         _setting(conn.remote_settings, INITIAL_WINDOW_SIZE, None), conn.max_outbound_frame_size)
    conn.streams[sid] = stream
    conn.highest_inbound_stream_id = sid
    if not conn._lean or _informational(headers):
        frames, events = stream.receive_headers(headers, bool(end_stream), conn.config.header_encoding)
        conn._prepare_for_sending(frames)
        return events
    # h2's H2Stream.receive_headers for a request on a new (idle) stream, its steps in its order: RECV_HEADERS
    # (RequestReceived), RECV_END_STREAM (StreamEnded, linked to it), the content-length; the fields as
    # decoded (with validation, normalization and decoding off, h2's processing is list()). It sends no frame.
    machine = stream.state_machine
    events = RECV_HEADERS.step(machine)
    event = events[0]
    if end_stream:
        ended = RECV_END_STREAM.step(machine)
        event.stream_ended = ended[0]
        events += ended
    _content_length(stream, headers)
    event.headers = list(headers)
    return events


cdef list _request_data(conn, stream, data, end_stream):
    """h2's ``_receive_data_frame`` + ``H2Stream.receive_data`` for an unpadded DATA frame on a stream the
    client may still send on (checked by the caller: h2 holds it, OPEN or HALF_CLOSED_LOCAL, the connection
    open), without the frame object, in h2's order: the connection's inbound window charged (its
    FlowControlError), the stream's RECV_DATA step (DataReceived), its window charged, the content-length
    tracked (InvalidBodyLengthError), then END_STREAM's step. The flow-controlled length is the data's (no
    padding here: a padded frame takes h2's path, which charges its padding). It sends no frame."""
    n = len(data)
    conn._inbound_flow_control_window_manager.window_consumed(n)
    events = RECV_DATA.step(stream.state_machine)
    event = events[0]
    stream._inbound_window_manager.window_consumed(n)
    _track_length(stream, n, end_stream)
    if end_stream:
        ended = RECV_END_STREAM.step(stream.state_machine)
        event.stream_ended = ended[0]
        events += ended
    event.data = data
    event.flow_controlled_length = n
    return events


cdef object _processed(manager, size):
    """h2's ``WindowManager.process_bytes`` (with its ``_maybe_update_window``), without its two Python frames:
    ``size`` bytes the app took; the increment to send back now (None or 0: none is due yet)."""
    processed = manager._bytes_processed + size
    manager._bytes_processed = processed
    if not processed:
        return None
    window = manager.current_window_size
    most = manager.max_window_size
    increment = 0
    if (window == 0 and processed > min(1024, most // 4)) or processed >= most // 2:
        increment = min(processed, most - window)
        manager._bytes_processed = 0
    manager.current_window_size = window + increment
    return increment


cdef object _window_update(sid, increment):
    frame = WindowUpdateFrame(sid)
    frame.window_increment = increment
    return frame


class H2Conn(H2Connection):
    """A server-side ``H2Connection`` whose ``receive_data`` reads a request's HEADERS frame in C."""

    def __init__(self, *args, **kwargs):
        H2Connection.__init__(self, *args, **kwargs)
        self._scan_at = 32
        # Read once: H2Session never changes its configuration after making the connection.
        config = self.config
        self._server = not config.client_side
        self._lean = not (config.header_encoding or config.validate_inbound_headers
                          or config.normalize_inbound_headers)

    def receive_data(self, data):
        buf = self.incoming_buffer
        if buf._headers_buffer or not self._server:
            return H2Connection.receive_data(self, data)  # (a header block continued: all of it is h2's)
        if buf._preamble_len:
            # The preamble is checked by h2's buffer (its ProtocolError, raised before h2's try, so no GOAWAY),
            # then the frames after it, in the same read (a connection's first requests), are read here too.
            k = min(<Py_ssize_t>buf._preamble_len, len(data))
            buf.add_data(data[:k])
            data = data[k:]
            if not data:
                buf.max_frame_size = self.max_inbound_frame_size  # (as h2's receive_data leaves it)
                return []
        if not isinstance(data, bytes):
            data = bytes(data)
        if buf._data:  # a frame cut by the last read: its bytes so far, then this read's, cut into frames here
            data = bytes(buf._data) + data
            del buf._data[:]
        cdef bytes raw = <bytes>data
        cdef const unsigned char *p = <const unsigned char *>PyBytes_AS_STRING(raw)
        cdef Py_ssize_t n = PyBytes_GET_SIZE(raw), pos = 0, end, length
        cdef unsigned long sid
        cdef int kind, flags
        events = []
        max_frame = self.max_inbound_frame_size
        buf.max_frame_size = max_frame
        cdef Py_ssize_t limit = max_frame
        try:
            while pos + 9 <= n:
                length = (<Py_ssize_t>p[pos] << 16) | (<Py_ssize_t>p[pos + 1] << 8) | p[pos + 2]
                end = pos + 9 + length
                if end > n:
                    break
                kind = p[pos + 3]
                flags = p[pos + 4]
                sid = ((<unsigned long>p[pos + 5] & 0x7f) << 24) | (<unsigned long>p[pos + 6] << 16) \
                    | (<unsigned long>p[pos + 7] << 8) | p[pos + 8]
                if (kind == HEADERS and (flags & (END_HEADERS | PADDED | PRIORITY)) == END_HEADERS
                        and length <= limit and sid & 1 and sid > self.highest_inbound_stream_id
                        and self.state_machine.state is SERVER_OPEN and sid not in self.streams):
                    events.extend(_request_headers(self, sid, raw[pos + 9:end], flags & END_STREAM))
                elif (kind == DATA and not (flags & PADDED) and length <= limit
                        and self.state_machine.state is SERVER_OPEN
                        and (stream := self.streams.get(sid)) is not None
                        and ((state := stream.state_machine.state) is S_OPEN or state is S_HALF_CLOSED_LOCAL)):
                    events.extend(_request_data(self, stream, raw[pos + 9:end], bool(flags & END_STREAM)))
                else:  # h2's own reading, for exactly this frame
                    buf.add_data(raw[pos:end])
                    for frame in buf:
                        events.extend(self._receive_frame(frame))
                    if buf._headers_buffer:  # a header block goes on in CONTINUATIONs: all of it is h2's
                        pos = end
                        break
                pos = end
            if pos < n:
                buf.add_data(raw[pos:])
                for frame in buf:
                    events.extend(self._receive_frame(frame))
        except InvalidPaddingError as e:  # (h2's receive_data, as it is)
            self._terminate_connection(ErrorCodes.PROTOCOL_ERROR)
            raise ProtocolError("Received frame with invalid padding.") from e
        except ProtocolError as e:
            self._terminate_connection(e.error_code)
            raise
        return events

    def acknowledge_received_data(self, acknowledged_size, stream_id):
        """h2's, in its order and with its errors, without its two debug-log calls (to h2's no-op logger) and the
        window managers' Python frames (``_processed``): the body's bytes an app took give the connection's
        window, and an open stream's, back; a WINDOW_UPDATE is made only when one is due (h2 sends one per half
        window, so most bodies make none). An unknown stream above every one seen raises NoSuchStreamError, a
        closed one is passed over, as in h2."""
        if stream_id <= 0:
            raise ValueError(f"Stream ID {stream_id} is not valid for acknowledge_received_data")
        if acknowledged_size < 0:
            raise ValueError("Cannot acknowledge negative data")
        frames = None
        increment = _processed(self._inbound_flow_control_window_manager, acknowledged_size)
        if increment:
            frames = [_window_update(0, increment)]
        stream = self.streams.get(stream_id)
        if stream is None:
            highest = (self.highest_outbound_stream_id if self._stream_id_is_outbound(stream_id)
                       else self.highest_inbound_stream_id)
            if stream_id > highest:
                raise NoSuchStreamError(stream_id)
        elif _STREAM_OPEN[<Py_ssize_t>stream.state_machine.state]:
            increment = _processed(stream._inbound_window_manager, acknowledged_size)
            if increment:
                frame = _window_update(stream.stream_id, increment)
                if frames is None:
                    frames = [frame]
                else:
                    frames.append(frame)
        if frames is not None:
            self._prepare_for_sending(frames)

    def _receive_frame(self, frame):
        """h2's ``_receive_frame`` without the repr() of every frame for a trace log that is off."""
        try:
            frames, events = self._frame_dispatch_table[frame.__class__](frame)
        except StreamClosedError as e:
            if self._stream_is_closed_by_reset(e.stream_id):
                f = RstStreamFrame(e.stream_id)
                f.error_code = e.error_code
                self._prepare_for_sending([f])
                events = e._events
            else:
                raise
        except StreamIDTooLowError as e:
            if self._stream_is_closed_by_reset(e.stream_id):
                f = RstStreamFrame(e.stream_id)
                f.error_code = ErrorCodes.STREAM_CLOSED
                self._prepare_for_sending([f])
                events = []
            elif self._stream_is_closed_by_end(e.stream_id):
                raise StreamClosedError(e.stream_id) from e
            else:
                raise
        else:
            self._prepare_for_sending(frames)
        return events

    def _open_streams(self, remainder):
        """h2 walks every stream it holds for each new one, to count the open ones and forget the closed ones.
        A server opens no streams of its own (no push), and the only limit h2 would check the inbound count
        against is deleted (H2Session refuses past MAX_STREAMS itself): so the walk is made only once the table
        doubled since the last one (closed streams are forgotten in amortized O(1); the table holds at most twice
        the streams the last walk kept + 33), and otherwise the count is the table's size, never below the true
        one. (A closed stream h2 still holds answers a late frame as h2 answers it between its own walks.) The
        walk is h2's, compiled (``_walk``)."""
        return _open_count(self, remainder)
