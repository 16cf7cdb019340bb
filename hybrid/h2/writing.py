"""The writing side of an HTTP/2 connection (a mixin of ``H2Session``, session.py): a response's HEADERS (with its
whole body in one compiled step when it fits: hybrid/_speedups/h2write.pyx), DATA within the windows, trailers,
and h2's queued bytes written once per loop iteration (``_flush_soon``) or at once for large frames.

The session holds ``h2`` (the connection), ``stream`` (the SocketStream), ``loop``, ``stall``
(--timeout-write-stall), ``extra_headers``, ``date_header``, ``closed``, ``flush_pending``, and its ``_reset`` and
``close``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from email.utils import formatdate
from typing import TYPE_CHECKING

from h2.errors import ErrorCodes
from h2.exceptions import H2Error

from hybrid._speedups.h2write import send_response
from hybrid._speedups.streams import StreamClosed
from hybrid.asgi.http import ClientDisconnected

if TYPE_CHECKING:
    from hybrid.h2.stream import H2Stream

logger = logging.getLogger("hybrid.error")

SMALL = 16384  # a DATA frame under this is written with the iteration's other frames (_flush_soon)
HIGH_WATER = 262144  # bytes waiting to be sent past which the session stops reading

_date = [0, b""]
# (":status" values made once: a bytes %-format is ~700 instructions a response)
_STATUS = {code: b"%d" % code for code in range(100, 600)}


def _date_value() -> bytes:
    now = int(time.time())
    if _date[0] != now:
        _date[0], _date[1] = now, formatdate(now, usegmt=True).encode()
    return _date[1]


class H2Writing:
    """HEADERS, DATA and trailers out, and the writes of what h2 queued."""


    def _response_headers(self, stream: H2Stream) -> list:
        headers = [(b":status", b"%d" % stream.status)]
        headers.extend(stream.headers)  # (normalized by the app's send: response_fields)
        headers.extend(self.extra_headers)
        if self.date_header:
            headers.append((b"date", _date_value()))
        return headers

    def send_headers(self, stream: H2Stream, end: bool) -> None:
        try:
            self.h2.send_headers(stream.id, self._response_headers(stream), end_stream=end)
        except H2Error as exc:  # (the stream closed under the app: h2 says so, the app hears a disconnect)
            raise ClientDisconnected(f"Stream closed: {exc}") from None
        self._flush_soon()

    def send_start(self, stream: H2Stream, body: bytes, end: bool) -> bool:
        """The response's HEADERS, with ``body`` in the same step when it fits the windows, one frame and the
        write bound (HIGH_WATER): serialized at once into h2's output (h2write.pyx says how h2's state follows).
        True when all of it (``end`` included) is queued; False: the HEADERS are, ``body`` (not empty) is not."""
        # (_response_headers, _date_value and _flush_soon inline: this runs for every response)
        status = stream.status
        headers = [(b":status", _STATUS.get(status) or b"%d" % status), *stream.headers, *self.extra_headers]
        if self.date_header:
            now = int(time.time())
            if _date[0] != now:
                _date[0], _date[1] = now, formatdate(now, usegmt=True).encode()
            headers.append((b"date", _date[1]))
        try:
            done = send_response(self.h2, stream.id, headers, body, end,
                                 self.stream.write_buffer_size() <= HIGH_WATER)
            if not done:  # (a state h2 must judge: its own calls, which raise what they raise)
                self.h2.send_headers(stream.id, headers, end_stream=end and not body)
                done = 2 if end and not body else 1
        except H2Error as exc:  # (the stream closed under the app: h2 says so, the app hears a disconnect)
            raise ClientDisconnected(f"Stream closed: {exc}") from None
        if done == 2:
            size = len(body)
            stream.sent += size
            if size >= SMALL:
                self._flush()  # (a large body: its bytes count against HIGH_WATER at once)
                return True
        if not self.flush_pending:
            self.flush_pending = True
            self.loop.call_soon(self._flush)
        return done == 2

    def send_trailers(self, stream: H2Stream, headers) -> None:
        try:
            self.h2.send_headers(stream.id, headers, end_stream=True)  # (normalized by the app's send)
        except H2Error as exc:
            raise ClientDisconnected(f"Stream closed: {exc}") from None
        self._flush()

    async def send_data(self, stream: H2Stream, data: bytes, end: bool) -> None:
        """Send ``data`` within the stream's and the connection's windows, waiting for WINDOW_UPDATEs; a
        window shut for --timeout-write-stall resets the stream (the app's send raises ClientDisconnected)."""
        h2 = self.h2
        sid = stream.id
        size = len(data)
        pos = 0
        while pos < size or (end and not size):
            if stream.gone or self.closed:
                raise ClientDisconnected("The client reset the stream or left")
            try:
                n = min(size - pos, h2.local_flow_control_window(sid), h2.max_outbound_frame_size)
                if n <= 0 and size:
                    try:
                        await stream.wait_window(self.stall)
                    except TimeoutError:
                        logger.info("Reset an HTTP/2 stream whose client opened no window for %g s "
                                    "(--timeout-write-stall).", self.stall)
                        self._reset(stream, ErrorCodes.CANCEL)
                        raise ClientDisconnected("Client stopped reading the response") from None
                    continue
                h2.send_data(sid, data[pos:pos + n], end_stream=end and pos + n == size)
                stream.sent += n
            except H2Error as exc:
                raise ClientDisconnected(f"Stream closed: {exc}") from None
            pos += n
            if n >= SMALL:
                self._flush()  # (a large body: its bytes count against HIGH_WATER at once)
                # Let the other streams' tasks run between large frames: a big body whose windows and socket
                # never make it wait would otherwise hold the loop until its last byte.
                await asyncio.sleep(0)
            else:
                self._flush_soon()
            if not size:
                break
            if self.stream.write_buffer_size() > HIGH_WATER:
                await self._drain()

    def send_data_now(self, stream: H2Stream, data: bytes, end: bool) -> bool:
        """``send_data`` when it need not wait: the body fits the windows and one frame, and the socket's
        buffer is under HIGH_WATER; False (nothing sent) otherwise. (crossing.py: no task for most responses.)"""
        h2 = self.h2
        size = len(data)
        if self.stream.write_buffer_size() > HIGH_WATER:
            return False
        try:
            if size and size > min(h2.local_flow_control_window(stream.id), h2.max_outbound_frame_size):
                return False
            h2.send_data(stream.id, data, end_stream=end)
        except H2Error as exc:
            raise ClientDisconnected(f"Stream closed: {exc}") from None
        stream.sent += size
        if size >= SMALL:
            self._flush()
        else:
            self._flush_soon()
        return True

    async def _drain(self) -> None:
        try:
            async with asyncio.timeout(self.stall):
                await self.stream.drain()
        except TimeoutError:
            logger.info("Closed an HTTP/2 connection whose client read nothing for %g s (--timeout-write-stall).",
                        self.stall)
            self.close()
            raise ClientDisconnected("Client stopped reading") from None
        except (StreamClosed, OSError) as exc:
            self.close()
            raise ClientDisconnected(f"Client disconnected: {exc}") from None

    def _flush_soon(self) -> None:
        """Write what h2 queued once this loop iteration's tasks have run: the responses of many streams
        answered in one iteration leave in one write."""
        if not self.flush_pending:
            self.flush_pending = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self.flush_pending = False
        data = self.h2.data_to_send()
        if data and not self.closed:
            try:
                self.stream.write(data)
            except (StreamClosed, OSError):
                self.close()
