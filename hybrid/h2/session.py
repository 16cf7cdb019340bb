"""One HTTP/2 connection (RFC 9113) on the async pool's loop: frames in, frames out, one task per stream's app.

Where it lives and why: the frames of a connection are shared by all its streams, so one owner must read and
write them; that is the pool's loop (the same thread that serves SSE and WebSockets), reached by a handoff
from the worker that saw the preface or the ALPN. Each stream's app runs on the worker thread that owns the
connection's home epoll set, as an HTTP/1.1 request would (crossing.py, onworker.py): a handler that blocks
there is taken over by a spare like an HTTP/1.1 one, and the pool's loop, with every other stream, SSE and
WebSocket, goes on. Streams HTTP/1.1 would hand to the pool (SSE, --async-path, learned streaming routes) run
on the pool's loop, where no blocking handler of a worker can hold them. Under --mode async there are no
workers: the apps run on the pool's loop as tasks, and one that blocks stalls it (docs/architecture.md,
"HTTP/2").

Defences (each closes with GOAWAY, the code says why): reset, PING and SETTINGS floods (guard.py budgets:
ENHANCE_YOUR_CALM); more than MAX_STREAMS streams at once (the extra ones refused: REFUSED_STREAM); header
lists over MAX_HEADER_LIST (the HPACK decoder: the connection ends, COMPRESSION_ERROR/PROTOCOL_ERROR) and CONTINUATION
floods (h2 keeps at most 64 frames of one header block); a frame or header block still incomplete after
--timeout-request-head; no stream open for --timeout-keep-alive (both: timeouts.py); a client that takes no
bytes (socket or stream window) for --timeout-write-stall. Reading stops while more than HIGH_WATER bytes wait
to be sent, so a client that floods without reading the answers cannot grow our buffers.
"""

from __future__ import annotations

import asyncio
import logging
import time

from h2.config import H2Configuration
from h2.errors import ErrorCodes
from h2.events import (
    ConnectionTerminated,
    DataReceived,
    PingReceived,
    RemoteSettingsChanged,
    RequestReceived,
    StreamEnded,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)
from h2.exceptions import H2Error, ProtocolError
from h2.settings import SettingCodes
from hyperframe.frame import GoAwayFrame

from hybrid._speedups.h2fields import FieldError, check_trailers, request_fields, response_fields
from hybrid._speedups.h2read import H2Conn
from hybrid._speedups.h2scope import build_scope, new_stream, wants_event_stream
from hybrid._speedups.hpack_codec import Decoder, Encoder
from hybrid._speedups.streams import SocketStream, StreamClosed
from hybrid.asgi.http import ClientDisconnected
from hybrid.h2 import crossing, report
from hybrid.h2.connect import connect_stream, is_extended_connect
from hybrid.h2.guard import EMPTY_DATA_BUDGET, PING_BUDGET, RESET_BUDGET, SETTINGS_BUDGET, Budget
from hybrid.h2.stream import H2Stream
from hybrid.h2.timeouts import H2Timeouts
from hybrid.h2.writing import HIGH_WATER, H2Writing
from hybrid.mailbox import Mailbox

logger = logging.getLogger("hybrid.error")

MAX_STREAMS = 100  # SETTINGS_MAX_CONCURRENT_STREAMS we advertise (h2's default), and refuse past
MAX_HEADER_LIST = 65536  # SETTINGS_MAX_HEADER_LIST_SIZE (h2's default), enforced by the HPACK decoder
CONNECTION_WINDOW = 1 << 20  # the connection's receive window: 16 streams' default windows
READ_SIZE = 65536
# h2's header validation and normalization (seven Python generators a block, ~30% of its cost) are off: the same
# RFC 9113 section 8.2/8.3 checks are made in one compiled pass (hybrid/_speedups/h2fields.pyx).
H2_CONFIG = dict(client_side=False, header_encoding=None, validate_inbound_headers=False,
                 normalize_inbound_headers=False, validate_outbound_headers=False, normalize_outbound_headers=False)

def _incomplete(buf) -> bool:
    """A frame, or a header block (HEADERS + CONTINUATIONs), is still incomplete: what --timeout-request-head
    bounds. (h2 4.x FrameBuffer's own fields: h2 offers no public view; tests/test_h2_defences.py checks it.)"""
    return bool(buf._data) or bool(buf._headers_buffer)


class H2Session(H2Timeouts, H2Writing):
    """One HTTP/2 connection handed to the pool (``H2Handoff``)."""

    in_pool = True  # (shutdown waits for worker connections, then drains the pool's)

    def __init__(self, pool, handoff) -> None:
        from hybrid.uvicorn_compat import parse_header

        self.pool = pool
        self.server = pool.server
        config = self.server.config
        self.loop = pool.loop
        self.sock = handoff.sock
        self.fd = handoff.sock.fileno()
        self.client_addr = handoff.client
        self.server_addr = handoff.server
        self.scheme = handoff.scheme
        self.home = handoff.home  # the epoll set whose owner runs the streams' apps (None: --mode async)
        if pool.h2_inbox is None:  # (what the workers post to this loop: sends, consumed bodies, app ends)
            pool.h2_inbox = Mailbox(self.loop)
        trust = self.server.proxy_trust  # (decided once per connection, as for HTTP/1.1)
        self.proxy = trust.for_peer(self.client_addr) if trust is not None else None
        self.fields_seen = [None]  # (h2fields.request_fields: the last block that passed and its answer)
        self.scope_base = None  # (what every scope of this connection shares: h2scope.build_scope makes it once)
        self.keep_alive = config.timeout_keep_alive
        self.head_timeout = config.timeout_request_head
        self.stall = config.timeout_write_stall
        self.body_limit = config.limit_request_body
        self.body_timeout = config.timeout_request_body
        extra = [parse_header(h) for h in config.headers]
        if self.server.server_header:
            extra.insert(0, (b"server", b"hybrid"))
        self.extra_headers = []
        for header in extra:  # (a --header HTTP/2 cannot carry, e.g. "te: gzip", is left out, as h2 refused it)
            try:
                self.extra_headers += response_fields((header,))
            except ValueError:
                pass
        self.date_header = self.server.date_header
        self.stream = SocketStream(handoff.sock, self.loop, handoff.initial)
        self.h2 = h2 = H2Conn(H2Configuration(**H2_CONFIG))  # (h2's, the request's HEADERS read in C: h2read.pyx)
        # HPACK compiled (hybrid/_speedups/hpack_codec.pyx: hpack's interface and errors), before any frame.
        h2.encoder, h2.decoder = Encoder(), Decoder()
        h2.local_settings.max_concurrent_streams = MAX_STREAMS
        h2.local_settings.max_header_list_size = MAX_HEADER_LIST
        # RFC 8441: extended CONNECT opens WebSockets (connect.py); with --ws none the setting is not sent at all.
        self.websockets = config.ws != "none"
        if self.websockets:
            h2.local_settings.enable_connect_protocol = 1
        else:
            del h2.local_settings[SettingCodes.ENABLE_CONNECT_PROTOCOL]  # (h2 reads it nowhere else)
        h2.local_settings.acknowledge()  # (in force from the start: h2 sends them in its first SETTINGS)
        h2.initiate_connection()
        # h2 would end the whole connection on stream MAX_STREAMS + 1 (TooManyStreamsError); RFC 9113 section
        # 5.1.2 lets a server refuse that stream alone, which _request does. The advertised value went out above.
        del h2.local_settings[SettingCodes.MAX_CONCURRENT_STREAMS]
        h2.decoder.max_header_list_size = MAX_HEADER_LIST
        h2.increment_flow_control_window(CONNECTION_WINDOW - 65535)
        self.streams: dict[int, H2Stream] = {}
        # Streams still held because their app runs on after a whole response, the client's side ended too: closed
        # for the client (RFC 9113 section 5.1.2), so they do not count against MAX_STREAMS (stream_done).
        self.answered: set[int] = set()
        self.resets = Budget(RESET_BUDGET)
        self.pings = Budget(PING_BUDGET)
        self.settings = Budget(SETTINGS_BUDGET)
        self.empty_data = Budget(EMPTY_DATA_BUDGET)
        self.idle_since = time.monotonic()
        self.partial_since = 0.0
        self.goaway_last: int | None = None  # set once we sent GOAWAY: streams above it are refused
        self.peer_goaway = False
        self.closed = False
        self.flush_pending = False
        self.reader = None
        self.watchdog = None  # the timer that checks the timeouts below (_watch)
        self.watch_at = 0.0
        self._flush()
        self.reader = self.loop.create_task(self._run())
        self._arm()

    # -- reading -----------------------------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._read_loop()
        except (StreamClosed, OSError):
            pass
        except Exception:  # noqa: BLE001 - a bug here must close this connection, not the loop
            logger.exception("HTTP/2 connection from %s failed", self.client_addr)
        finally:
            self.close()

    async def _read_loop(self) -> None:
        stream = self.stream
        h2 = self.h2
        while not self.closed:
            # (No asyncio.timeout around the read: on Python 3.11 each costs 3 getpid system calls, ~30 us here;
            # the watchdog timer bounds the waits instead.)
            data = await stream.read(READ_SIZE)
            if not data:
                return
            try:
                events = h2.receive_data(data)
            except ProtocolError as exc:  # h2 queued a GOAWAY with the error's code
                logger.debug("HTTP/2 protocol error from %s: %s", self.client_addr, exc)
                self._flush()
                return
            self._handle(events)
            if _incomplete(h2.incoming_buffer):
                if not self.partial_since:
                    self.partial_since = now = time.monotonic()
                    if self.watch_at > now + self.head_timeout:
                        self._arm()  # (the head's bound ends before the watchdog would look)
            else:
                self.partial_since = 0.0
            self._flush()
            if self.closed or (self.peer_goaway and not self.streams):
                return
            if stream.write_buffer_size() > HIGH_WATER:
                try:
                    async with asyncio.timeout(self.stall):
                        await stream.drain()
                except TimeoutError:
                    logger.info("Closed an HTTP/2 connection whose client read nothing for %g s "
                                "(--timeout-write-stall).", self.stall)
                    return

    def _handle(self, events) -> None:
        starting = []
        for event in events:
            kind = type(event)
            if kind is DataReceived:
                if not event.flow_controlled_length and event.stream_ended is None and not self.empty_data.spend():
                    return self._calm("empty DATA frame flood")
                self._data(event)
            elif kind is RequestReceived:
                try:
                    stream = self._request(event)
                except FieldError as exc:  # a malformed request: GOAWAY PROTOCOL_ERROR, as h2's check did
                    return self._malformed(exc)
                if stream is not None:
                    starting.append(stream)
            elif kind is TrailersReceived:
                try:
                    check_trailers(event.headers)
                except FieldError as exc:
                    return self._malformed(exc)
            elif kind is StreamEnded:
                stream = self.streams.get(event.stream_id)
                if stream is not None:
                    if type(stream) is H2Stream and stream.inbox is None and stream.waiter is None:
                        # (H2Stream.on_end for most requests, ended in their HEADERS: no one waits)
                        stream.ended = True
                    else:
                        stream.on_end()
            elif kind is WindowUpdated:
                self._window_opened(event.stream_id)
            elif kind is StreamReset:
                stream = self.streams.pop(event.stream_id, None)
                self.answered.discard(event.stream_id)
                if stream is not None:
                    self._release_body(stream)
                    stream.on_gone()
                    stream.cancel_app()  # (its response can reach nobody)
                    self._maybe_idle()
                if event.remote_reset and not self.resets.spend():
                    return self._calm("RST_STREAM flood (rapid reset)")
            elif kind is PingReceived:
                if not self.pings.spend():
                    return self._calm("PING flood")
            elif kind is RemoteSettingsChanged:
                if not self.settings.spend():
                    return self._calm("SETTINGS flood")
                self._window_opened(0)  # (a new INITIAL_WINDOW_SIZE changes every stream's window)
            elif kind is ConnectionTerminated:
                self.peer_goaway = True
        # Apps start after the whole read is handled: a stream the same read resets never runs its app.
        remote = False
        for stream in starting:
            if not stream.gone:
                remote = self._start(stream) or remote
        if remote:
            crossing.wake_soon(self)  # (the streams of this iteration's reads reach the workers together)

    def _request(self, event) -> H2Stream | None:
        sid = event.stream_id
        h2 = self.h2
        try:
            # (FieldError: checked even if refused; the last block that passed kept for its repeats)
            method, path, _, fields = request_fields(event.headers, self.fields_seen)
        except FieldError:
            if not is_extended_connect(event.headers):
                raise
            h2.reset_stream(sid, ErrorCodes.PROTOCOL_ERROR)  # a stream error (RFC 8441 section 4)
            return None
        if ((self.goaway_last is not None and sid > self.goaway_last)
                or len(self.streams) - len(self.answered) >= MAX_STREAMS):
            h2.reset_stream(sid, ErrorCodes.REFUSED_STREAM)  # (safe to retry: no app code ran)
            return None
        if method == b"CONNECT":  # a WebSocket (RFC 8441), or refused (connect.py)
            stream = connect_stream(self, sid, event.headers, path, fields)
        else:
            stream = new_stream(H2Stream, self, sid, build_scope(self, method, path, fields))  # (H2Stream(...), in C)
        if stream is None:
            return None
        self.streams[sid] = stream
        return stream

    def _data(self, event) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is None:  # (a stream already reset or answered: keep the connection's window open)
            self._ack(event.stream_id, event.flow_controlled_length)
            return
        stream.on_data(event.data, event.flow_controlled_length)
        if self.body_limit is not None and stream.body_bytes > self.body_limit:  # --limit-request-body
            self._release_body(stream)
            if not stream.sent_headers:
                stream.sent_headers = stream.complete = True
                stream.status = 413  # (the access log's and ResponseCompleted's, as for HTTP/1.1)
                self.h2.send_headers(stream.id, [(b":status", b"413"), (b"content-length", b"0")],
                                     end_stream=True)
            self._reset(stream, ErrorCodes.NO_ERROR if stream.sent_headers else ErrorCodes.CANCEL)
            if stream.task is None and not stream.remote:  # (in the read that opened it: its app never runs)
                report.ended(self, stream, "pool", ran=False)

    def body_stalled(self, stream: H2Stream) -> None:
        """--timeout-request-body: the app waits for a body the client stopped sending (or trickles): 408 if
        nothing was answered yet, then RST_STREAM; the app's receive() says http.disconnect."""
        if stream.gone or self.closed:
            return
        if not stream.sent_headers:
            stream.sent_headers = stream.complete = True
            stream.status = 408
            self.h2.send_headers(stream.id, [(b":status", b"408"), (b"content-length", b"0")], end_stream=True)
        self._reset(stream, ErrorCodes.NO_ERROR if stream.complete else ErrorCodes.CANCEL)

    def _ack(self, sid: int, flow: int) -> None:
        try:
            self.h2.acknowledge_received_data(flow, sid)
        except H2Error:
            pass

    def consumed(self, sid: int, flow: int) -> None:
        """The app received ``flow`` bytes of a stream's body: open the windows again (h2 batches updates; the
        WINDOW_UPDATEs of every stream consumed in this loop iteration leave in one write)."""
        if flow and not self.closed:
            self._ack(sid, flow)
            self._flush_soon()

    def _window_opened(self, sid: int) -> None:
        if sid == 0:
            for stream in self.streams.values():
                stream.wake_window()
        else:
            stream = self.streams.get(sid)
            if stream is not None:
                stream.wake_window()

    # -- apps ----------------------------------------------------------------------------------------------

    def _start(self, stream: H2Stream) -> bool:
        """Start the stream's app; True when it went to a worker (the read's streams wake it once)."""
        server = self.server
        server.requests += 1
        if stream.is_websocket:
            return stream.start()  # on this loop, as an HTTP/1.1 WebSocket after its handoff (websocket.py)
        home = self.home
        if home is not None:
            # As an HTTP/1.1 request would be handed to the pool before any app code (Accept includes
            # text/event-stream, or --async-path / a learned streaming route matches), the app runs here (below);
            # any other is queued in the connection's home set (the session wakes its owner once per loop
            # iteration: crossing.wake_soon) and held in pool.h2_remote until its end is applied (a graceful
            # shutdown makes a future stand for each: crossing.stand_in).
            scope = stream.scope
            router = server.router
            if not (wants_event_stream(scope["headers"])
                    or (router.active and router.wants_pool(scope["method"], scope["path"]))):
                stream.remote = True  # on a worker thread, where a blocking step is taken over
                stream.task = crossing.RUNNING
                self.pool.h2_remote.add(stream)
                home.h2_streams.append(stream)
                return True
        # A stream (SSE, --async-path, a route learned as streaming) runs here, as over HTTP/1.1: on a worker's
        # loop it would stop while another handler of that thread blocks.
        stream.scope["state"] = self.pool.state.copy()  # (the pool loop's lifespan state)
        if self.server.lifecycle is not None:
            report.started(self.server, stream, "pool")
        stream.task = self.pool.start_app(stream.scope, stream.receive, stream.send, stream,
                                          lambda task: self._app_done(stream, task))
        return False

    def _app_done(self, stream: H2Stream, task) -> None:
        self.pool.tasks.discard(task)
        stream.task = None
        try:
            self._end_stream(stream, None if task.cancelled() else task.exception())
        finally:
            report.ended(self, stream, "pool")

    def app_finished(self, stream: H2Stream, exc, ran: bool = True) -> None:
        """A remote app (crossing.py) ended, after all it sent was applied (``ran``: False if it never started)."""
        proxy = stream.task
        stream.task = None
        if proxy is not None:
            pool = self.pool
            pool.h2_remote.discard(stream)
            if proxy is not crossing.RUNNING:  # (a shutdown's stand-in: crossing.stand_in)
                pool.tasks.discard(proxy)
                if not proxy.done():
                    proxy.set_result(None)
        try:
            self._end_stream(stream, exc)
        finally:
            report.ended(self, stream, "worker", ran)

    def end_whole(self, stream: H2Stream, body: bytes) -> bool:
        """``crossing.finish`` for a remote app that ended without error after its whole response, nothing
        sent before (most requests): its HEADERS and last body queued (``send_start``), then what
        ``app_finished``, ``_end_stream`` and ``stream_done`` do for it, without their calls. False: the HEADERS
        are queued, the body is not (it must wait for a window): the caller goes on in order."""
        stream.sent_headers = True
        if not self.send_start(stream, body, True):
            return False
        proxy = stream.task
        stream.task = None
        if proxy is not None:
            pool = self.pool
            pool.h2_remote.discard(stream)
            if proxy is not crossing.RUNNING:  # (a shutdown's stand-in: crossing.stand_in)
                pool.tasks.discard(proxy)
                if not proxy.done():
                    proxy.set_result(None)
        sid = stream.id
        streams = self.streams
        if streams.get(sid) is stream:
            del streams[sid]
            self.answered.discard(sid)
            if stream.body:
                self._release_body(stream)
            if not stream.ended:  # (a body the app did not read: RST_STREAM NO_ERROR, RFC 9113 section 8.1)
                self._reset(stream, ErrorCodes.NO_ERROR)
            if not streams:
                self._maybe_idle()
        server = self.server
        if server.access_log or server.lifecycle is not None:
            report.ended(self, stream, "worker")
        return True

    def _end_stream(self, stream: H2Stream, exc) -> None:
        if exc is not None and not (stream.gone and isinstance(exc, ClientDisconnected)):
            logger.error("Exception in ASGI application", exc_info=exc)
        if self.closed or stream.gone:
            return self.stream_done(stream)
        if not stream.sent_headers:
            if exc is None:
                logger.error("ASGI callable returned without starting response.")
            stream.sent_headers = stream.complete = True
            stream.status = 500
            stream.sent = 21  # (its body, as the access log and ResponseCompleted count an app's)
            try:
                self.h2.send_headers(stream.id, [(b":status", b"500"), (b"content-length", b"21"),
                                                 (b"content-type", b"text/plain; charset=utf-8")])
                self.h2.send_data(stream.id, b"Internal Server Error", end_stream=True)
            except H2Error:
                pass  # (the stream closed meanwhile: nobody to tell)
            self._flush()
            self.stream_done(stream)
        elif not stream.complete or stream.trailers:
            if exc is None:
                logger.error("ASGI callable returned without completing response.")
            self._reset(stream, ErrorCodes.INTERNAL_ERROR)  # never a truncated body taken for a whole one
        else:
            self.stream_done(stream)

    def stream_done(self, stream: H2Stream) -> None:
        """The response went out whole (or the stream is gone): forget the stream. A request body the app did
        not read is cut short with RST_STREAM NO_ERROR (RFC 9113 section 8.1)."""
        if self.streams.get(stream.id) is not stream:
            return
        if stream.task is not None and not stream.gone:
            if stream.ended and stream.complete:  # (the client may open another stream in its place at once)
                self.answered.add(stream.id)
            return  # the app still runs (after its response): the stream ends with it
        del self.streams[stream.id]
        self.answered.discard(stream.id)
        if stream.body:
            self._release_body(stream)
        if not stream.ended and not stream.gone and not self.closed:
            self._reset(stream, ErrorCodes.NO_ERROR)
        if not self.streams:
            self._maybe_idle()

    def _maybe_idle(self) -> None:
        if not self.streams:
            self.idle_since = time.monotonic()
            if self.goaway_last is not None or self.peer_goaway:
                self.close()

    def _release_body(self, stream: H2Stream) -> None:
        """Body bytes the app will never receive: give their share of the connection's window back (else every
        stream reset with unread body would shrink it for good)."""
        body = stream.body
        flow = 0
        while body:  # (popped one by one: a remote app's receive may pop from the other end meanwhile)
            try:
                flow += body.popleft()[1]
            except IndexError:
                break
        if flow:
            self._ack(stream.id, flow)

    def _reset(self, stream: H2Stream, code) -> None:
        self.streams.pop(stream.id, None)
        self.answered.discard(stream.id)
        self._release_body(stream)
        stream.on_gone()
        try:
            self.h2.reset_stream(stream.id, code)
        except H2Error:
            pass
        self._flush()
        self._maybe_idle()

    # -- ending --------------------------------------------------------------------------------------------

    def _malformed(self, exc: FieldError) -> None:
        logger.debug("HTTP/2 protocol error from %s: %s", self.client_addr, exc)
        self._goaway(ErrorCodes.PROTOCOL_ERROR, b"")
        self.close()

    def _calm(self, why: str) -> None:
        logger.warning("Closed an HTTP/2 connection from %s: %s (GOAWAY ENHANCE_YOUR_CALM)", self.client_addr, why)
        self.h2.clear_outbound_data_buffer()  # (the ACKs h2 queued for the flood's last read are not sent)
        self._goaway(ErrorCodes.ENHANCE_YOUR_CALM, why.encode())
        self.close()

    def _goaway(self, code, debug: bytes) -> None:
        try:
            self.h2.close_connection(error_code=code, additional_data=debug)
        except H2Error:
            pass
        self._flush()

    def shutdown(self) -> None:
        """Graceful: GOAWAY naming the last stream we took; those finish, later ones are refused; then close.
        (The frame is made here: h2's own close_connection would forbid sending the in-flight responses.)"""
        if self.closed or self.goaway_last is not None:
            return
        self.goaway_last = self.h2.highest_inbound_stream_id
        self._flush()
        try:
            self.stream.write(GoAwayFrame(0, last_stream_id=self.goaway_last, error_code=0).serialize())
        except (StreamClosed, OSError):
            self.close()
            return
        if not self.streams:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.watchdog is not None:
            self.watchdog.cancel()
            self.watchdog = None
        self._flush_quietly()
        for stream in list(self.streams.values()):
            stream.on_gone()
        self.streams.clear()
        self.answered.clear()
        if self.reader is not None and self.reader is not asyncio.current_task(self.loop):  # (no getpid)
            self.reader.cancel()
        if self.server.lifecycle is not None:  # (the worker's ConnectionOpened is ended here, after its streams')
            self.server.lifecycle_closed(self.fd)
        self.sock = None
        self.server.forget(self)
        self.pool.h2_sessions.discard(self)
        self.pool.close_later(self.stream)

    def _flush_quietly(self) -> None:
        data = self.h2.data_to_send()
        if data:
            try:
                self.stream.write(data)
            except (StreamClosed, OSError):
                pass
