"""A frame-level HTTP/2 client for the tests: h2's client mode over a real socket, every wait bounded."""

from __future__ import annotations

import socket
import time

import h2.config
import h2.connection
import h2.events
from hyperframe.frame import GoAwayFrame


class H2Client:
    """One HTTP/2 connection with prior knowledge (or over a given socket, e.g. TLS with ALPN h2)."""

    def __init__(self, addr=None, *, sock=None, timeout: float = 5.0, settings: dict | None = None) -> None:
        self.sock = sock if sock is not None else socket.create_connection(addr, timeout=timeout)
        self.sock.settimeout(timeout)
        self.timeout = timeout
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        if settings:
            self.conn.local_settings.update(settings)
            self.conn.local_settings.acknowledge()
        self.conn.initiate_connection()
        self.events: list = []
        self.closed = False
        self.received = 0
        self.flush()

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def request(self, path: str, *, method: str = "GET", headers=(), body: bytes | None = None,
                end: bool = True, flush: bool = True) -> int:
        sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(sid, [(b":method", method.encode()), (b":path", path.encode()),
                                     (b":scheme", b"http"), (b":authority", b"test"), *headers],
                               end_stream=end and body is None)
        if body is not None:
            step = self.conn.max_outbound_frame_size
            for i in range(0, max(len(body), 1), step):
                self.conn.send_data(sid, body[i:i + step], end_stream=end and i + step >= len(body))
        if flush:
            self.flush()
        return sid

    def pump(self, timeout: float | None = None) -> bool:
        """Read once (up to ``timeout``); False at EOF or reset."""
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        try:
            data = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            self.closed = True
            return False
        self.received += len(data)
        events = self.conn.receive_data(data)
        self.events.extend(events)
        for event in events:
            if isinstance(event, h2.events.DataReceived) and event.stream_id:
                try:  # a reader that reads: open the windows again
                    self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                except h2.exceptions.H2Error:
                    pass
        try:
            self.flush()
        except OSError:
            pass
        return True

    def wait_for(self, match, timeout: float | None = None):
        """The first event (seen so far or to come) for which ``match(event)``; AssertionError at timeout."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        seen = 0
        while True:
            for event in self.events[seen:]:
                if match(event):
                    return event
            seen = len(self.events)
            left = deadline - time.monotonic()
            if left <= 0 or self.closed:
                raise AssertionError(f"no matching event; saw {self.events[-8:]}")
            try:
                if not self.pump(left):
                    continue
            except TimeoutError:
                continue

    def response(self, sid: int, timeout: float | None = None) -> tuple[dict, bytes]:
        """(headers, body) of a stream once it ended."""
        self.wait_for(lambda e: isinstance(e, h2.events.StreamEnded) and e.stream_id == sid
                      or isinstance(e, h2.events.StreamReset) and e.stream_id == sid, timeout)
        headers = {}
        body = b""
        for event in self.events:
            if getattr(event, "stream_id", None) != sid:
                continue
            if isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
                headers.update(dict(event.headers))
            elif isinstance(event, h2.events.DataReceived):
                body += event.data
            elif isinstance(event, h2.events.StreamReset):
                raise AssertionError(f"stream {sid} reset with {event.error_code!r}")
        return headers, body

    def goaway(self, timeout: float | None = None):
        return self.wait_for(lambda e: isinstance(e, h2.events.ConnectionTerminated), timeout)

    def read_until_closed(self, timeout: float) -> float:
        """Read (and drop) until the server closes; returns when. AssertionError past ``timeout``."""
        deadline = time.monotonic() + timeout
        while not self.closed:
            left = deadline - time.monotonic()
            assert left > 0, f"connection not closed within {timeout} s"
            try:
                self.pump(left)
            except TimeoutError:
                continue
            except h2.exceptions.ProtocolError:
                self.closed = True  # (h2 refuses frames after a GOAWAY it got: the server's, good enough)
        return time.monotonic()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def goaway_frame(last_stream_id: int = 0, code: int = 0) -> bytes:
    return GoAwayFrame(0, last_stream_id=last_stream_id, error_code=code).serialize()


def read_frames(sock, timeout: float, until=lambda frame: False) -> tuple[list, bool]:
    """Raw frames (hyperframe, no connection state: what h2's client refuses after a GOAWAY is still read)
    until the peer closes, ``until(frame)`` or ``timeout``; returns (frames, closed)."""
    from hyperframe.frame import Frame

    deadline = time.monotonic() + timeout
    buf = b""
    frames = []
    while True:
        while len(buf) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(buf[:9]))
            if len(buf) < 9 + length:
                break
            frame.parse_body(memoryview(buf[9:9 + length]))
            buf = buf[9 + length:]
            frames.append(frame)
            if until(frame):
                return frames, False
        left = deadline - time.monotonic()
        if left <= 0:
            return frames, False
        sock.settimeout(left)
        try:
            data = sock.recv(65536)
        except TimeoutError:
            return frames, False
        except (ConnectionResetError, BrokenPipeError):
            data = b""
        if not data:
            return frames, True
        buf += data
