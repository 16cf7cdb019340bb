"""The crossloop scenario's client (bench/scenarios/crossloop.py): N subscribers and one publisher, one asyncio
process (uvloop), raw sockets, no HTTP or WebSocket library:

    python -m bench.xloopclient PORT KIND STREAM PUBLISH SUBSCRIBERS WARMUP DURATION

KIND is ``sse`` (each subscriber GETs STREAM with ``Accept: text/event-stream`` and reads ``data:`` lines, chunked
or not) or ``ws`` (each opens a WebSocket on STREAM and reads text frames). Once every subscriber has its
``ready`` message, the publisher sends ``POST PUBLISH + "m<i>"`` on one keep-alive connection and waits until every
subscriber has ``m<i>`` and the POST's answer is in, then sends the next: one message in flight, as the tests do.
A delivery's latency runs from just before the POST's write to the read that completes the message. A message a
subscriber lacks ROUND_TIMEOUT after its POST counts as lost (one arriving later as late, not as a delivery); a
POST answered with another status than 200 (or cut) counts as a publish failure, with no delivery due; after
MAX_BAD_ROUNDS such rounds in a row the run stops, and at once when a POST gets no answer in ROUND_TIMEOUT (a
server that hangs costs seconds, not minutes).

Messages sent in the first WARMUP seconds are not measured (their lost deliveries are counted all the same);
prints "start" when the measured window opens and "end" once its last round is over (the scenario samples the
server's CPU time between the two), then one JSON line.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import resource
import struct
import sys
import time

ROUND_TIMEOUT = 2.0
READY_TIMEOUT = 10.0
MAX_BAD_ROUNDS = 3
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MASK = b"\x00\x00\x00\x00"  # the client's frames are a pong or a close, nothing to hide


class ProtocolError(Exception):
    pass


class Dechunker:
    """HTTP/1.1 chunked transfer coding, fed in arbitrary pieces; ``feed`` returns the payload bytes so far."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.left = 0       # payload bytes still due in the current chunk
        self.crlf = False   # the CRLF after a chunk's payload is due
        self.done = False

    def feed(self, data: bytes) -> bytes:
        self.buf += data
        out = bytearray()
        while self.buf and not self.done:
            if self.left:
                take = min(self.left, len(self.buf))
                out += self.buf[:take]
                del self.buf[:take]
                self.left -= take
                self.crlf = self.left == 0
            elif self.crlf:
                if len(self.buf) < 2:
                    break
                if self.buf[:2] != b"\r\n":
                    raise ProtocolError("chunk not followed by CRLF")
                del self.buf[:2]
                self.crlf = False
            else:
                end = self.buf.find(b"\r\n")
                if end < 0:
                    if len(self.buf) > 64:
                        raise ProtocolError("chunk size line too long")
                    break
                size = int(bytes(self.buf[:end]).split(b";")[0], 16)
                del self.buf[:end + 2]
                if size == 0:
                    self.done = True
                self.left = size
        return bytes(out)


def head_of(buf: bytearray) -> tuple[int, dict[bytes, bytes], int] | None:
    """(status, headers with lower-case names, head length) once ``buf`` holds a whole response head."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = bytes(buf[:end]).split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise ProtocolError(f"bad status line {lines[0][:60]!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers, end + 4


class Subscriber(asyncio.Protocol):
    """One stream: hands every message to ``run.delivered(self, message, when)``."""

    def __init__(self, run: Run, index: int) -> None:
        self.run, self.index = run, index
        self.buf = bytearray()
        self.head_done = False
        self.transport: asyncio.Transport | None = None
        self.dechunk: Dechunker | None = None
        self.events = bytearray()  # SSE: de-chunked text not yet split into events
        self.key = base64.b64encode(os.urandom(16))

    def connection_made(self, transport) -> None:
        self.transport = transport
        host = f"127.0.0.1:{self.run.port}"
        if self.run.kind == "sse":
            req = f"GET {self.run.stream} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\n\r\n".encode()
        else:
            req = (f"GET {self.run.stream} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   f"Sec-WebSocket-Key: {self.key.decode()}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
        transport.write(req)

    def data_received(self, data: bytes) -> None:
        when = time.perf_counter()  # before any parsing: the read that completes a message is its arrival
        self.buf += data
        try:
            if self.head_done or self._head():
                if self.run.kind == "sse":
                    self._sse()
                else:
                    self._ws()
        except (ProtocolError, ValueError, UnicodeDecodeError) as exc:
            self.run.failed(self, "protocol", str(exc))
        if self.run.arrivals:
            self.run.flush(when)

    def _head(self) -> bool:
        got = head_of(self.buf)
        if got is None:
            if len(self.buf) > 16384:
                raise ProtocolError("response head over 16 KiB")
            return False
        status, headers, n = got
        del self.buf[:n]
        self.head_done = True
        if self.run.kind == "ws":
            accept = base64.b64encode(hashlib.sha1(self.key + WS_GUID).digest())
            if status != 101 or headers.get(b"sec-websocket-accept") != accept:
                raise ProtocolError(f"no valid 101 (status {status})")
        else:
            if status != 200:
                raise ProtocolError(f"status {status}")
            if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
                self.dechunk = Dechunker()
        return True

    def _sse(self) -> None:
        body = self.dechunk.feed(bytes(self.buf)) if self.dechunk else bytes(self.buf)
        self.buf.clear()
        self.events += body.replace(b"\r\n", b"\n")
        while (end := self.events.find(b"\n\n")) >= 0:
            event = bytes(self.events[:end])
            del self.events[:end + 2]
            for line in event.split(b"\n"):
                if line.startswith(b"data:"):
                    self.run.arrivals.append((self, line[5:].strip().decode()))
        if self.dechunk and self.dechunk.done:
            raise ProtocolError("stream ended")

    def _ws(self) -> None:
        buf = self.buf
        while len(buf) >= 2:
            b0, b1 = buf[0], buf[1]
            n, at = b1 & 0x7F, 2
            if n == 126:
                if len(buf) < 4:
                    return
                (n,), at = struct.unpack_from("!H", buf, 2), 4
            elif n == 127:
                if len(buf) < 10:
                    return
                (n,), at = struct.unpack_from("!Q", buf, 2), 10
            if b1 & 0x80:
                raise ProtocolError("masked frame from the server")
            if len(buf) < at + n:
                return
            payload = bytes(buf[at:at + n])
            del buf[:at + n]
            opcode = b0 & 0x0F
            if opcode == 0x9:  # ping: answer, as any client must
                self.transport.write(bytes((0x8A, 0x80 | n)) + MASK + payload)
            elif opcode == 0x8:
                raise ProtocolError("closed by the server")
            elif opcode == 0x1 and b0 & 0x80:
                self.run.arrivals.append((self, payload.decode()))
            elif opcode != 0xA:  # (messages here are short text: a fragmented one is a surprise worth a failure)
                raise ProtocolError(f"unexpected frame, opcode {opcode}")

    def connection_lost(self, exc) -> None:
        self.run.failed(self, "closed", repr(exc) if exc else "closed by the server")

    def close(self) -> None:
        if self.transport and not self.transport.is_closing():
            if self.run.kind == "ws" and self.head_done:
                self.transport.write(b"\x88\x82" + MASK + b"\x03\xe8")  # close 1000
            self.transport.close()


class Publisher(asyncio.Protocol):
    """One keep-alive connection: ``post(path)`` returns a future of the status of the answer. ``usable`` turns
    false once the server closes it or says it will (hypercorn closes a connection after 1,000 requests)."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.waiter: asyncio.Future | None = None
        self.transport: asyncio.Transport | None = None
        self.usable = False
        self.answered = 0.0  # when the last answer was complete

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.usable = True

    def post(self, path: str, host: str) -> asyncio.Future:
        self.waiter = asyncio.get_running_loop().create_future()
        if not self.usable or self.transport.is_closing():
            self.waiter.set_exception(ConnectionError("publisher's connection closed"))
        else:
            self.transport.write(f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\n\r\n".encode())
        return self.waiter

    def data_received(self, data: bytes) -> None:
        self.buf += data
        try:
            got = head_of(self.buf)
        except ProtocolError as exc:
            return self._settle(exc)
        if got is None:
            return
        status, headers, n = got
        if b"content-length" not in headers:
            return self._settle(ProtocolError("publisher: answer without Content-Length"))
        length = int(headers[b"content-length"])
        if len(self.buf) >= n + length:
            del self.buf[:n + length]
            if headers.get(b"connection", b"").lower() == b"close":
                self.usable = False
            self._settle(status)

    def _settle(self, value) -> None:
        self.answered = time.perf_counter()
        if self.waiter is not None and not self.waiter.done():
            if isinstance(value, BaseException):
                self.waiter.set_exception(value)
            else:
                self.waiter.set_result(value)

    def connection_lost(self, exc) -> None:
        self.usable = False
        self._settle(ConnectionError("publisher's connection closed"))


def refused(answer: asyncio.Future) -> bool:
    """A POST's answer (done) says the message was not published: another status than 200, or no answer."""
    return answer.exception() is not None or answer.result() != 200


class Run:
    def __init__(self, port: int, kind: str, stream: str, publish: str, subscribers: int, warmup: float,
                 duration: float) -> None:
        if kind not in ("sse", "ws"):
            raise SystemExit(f"KIND is sse or ws, not {kind!r}")
        self.port, self.kind, self.stream, self.publish, self.n = port, kind, stream, publish, subscribers
        self.warmup, self.duration = warmup, duration
        self.subs: list[Subscriber] = []
        self.arrivals: list[tuple[Subscriber, str]] = []  # of the read under way, flushed at its end
        self.ready: set[int] = set()
        self.current = ""              # the message in flight
        self.sent = 0.0
        self.got: set[int] = set()     # subscribers that have the current message
        self.measuring = False
        self.latencies: list[float] = []
        self.changed: asyncio.Event | None = None
        self.failures: dict[str, int] = {"connect": 0, "protocol": 0, "closed": 0}
        self.failed_subs: set[int] = set()
        self.errors: list[str] = []
        self.late = 0
        self.unexpected = 0
        self.closing = False

    def flush(self, when: float) -> None:
        for sub, message in self.arrivals:
            if message == "ready":
                self.ready.add(sub.index)
            elif message == self.current and sub.index not in self.got:
                self.got.add(sub.index)
                if self.measuring:
                    self.latencies.append((when - self.sent) * 1e3)
            elif message.startswith("m") and message[1:].isdigit() and message != self.current:
                self.late += 1
            else:
                self.unexpected += 1
        self.arrivals.clear()
        self.changed.set()

    def failed(self, sub: Subscriber, why: str, detail: str) -> None:
        if sub.index in self.failed_subs or self.closing:
            return
        self.failed_subs.add(sub.index)
        self.failures[why] += 1
        self.errors.append(f"subscriber {sub.index}: {detail}"[:200])
        sub.close()
        self.changed.set()

    async def _until(self, predicate, deadline: float) -> bool:
        while not predicate():
            left = deadline - time.perf_counter()
            if left <= 0:
                return False
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), left)
            except TimeoutError:
                pass
        return True

    async def _publisher(self, loop) -> Publisher:
        publisher = Publisher()
        try:
            await loop.create_connection(lambda: publisher, "127.0.0.1", self.port)
        except OSError as exc:
            raise SystemExit(f"publisher cannot connect: {exc!r}") from None
        return publisher

    async def main(self) -> dict:
        loop = asyncio.get_running_loop()
        self.changed = asyncio.Event()
        for i in range(self.n):
            sub = Subscriber(self, i)
            self.subs.append(sub)
            try:
                await loop.create_connection(lambda s=sub: s, "127.0.0.1", self.port)
            except OSError as exc:
                self.failures["connect"] += 1
                self.failed_subs.add(i)
                self.errors.append(f"subscriber {i}: {exc!r}"[:200])
        publisher = await self._publisher(loop)
        reconnects = 0
        host = f"127.0.0.1:{self.port}"
        ready_by = time.perf_counter() + READY_TIMEOUT
        await self._until(lambda: len(self.ready | self.failed_subs) == self.n, ready_by)
        alive = len(self.ready - self.failed_subs)
        t_start = time.perf_counter() + self.warmup
        t_end = t_start + self.duration
        messages = deliveries_due = lost = lost_in_window = bad_rounds = 0
        post_ms: list[float] = []
        publish_error, publish_failures = None, 0
        ru0 = w0 = None
        i = 0
        while alive and time.perf_counter() < t_end and bad_rounds < MAX_BAD_ROUNDS:
            if not self.measuring and time.perf_counter() >= t_start:
                self.measuring = True
                ru0, w0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
                print("start", flush=True)
            if not publisher.usable:  # a new connection, before the clock starts: its connect is no delivery's
                publisher.transport.close()
                publisher = await self._publisher(loop)
                reconnects += 1
            self.current, self.got = f"m{i}", set()
            i += 1
            self.sent = time.perf_counter()
            answer = publisher.post(self.publish + self.current, host)
            answer.add_done_callback(lambda _: self.changed.set())
            live = lambda: self.ready - self.failed_subs  # noqa: E731 - (one failing meanwhile is not waited for)
            await self._until(lambda: answer.done() and (refused(answer) or live() <= self.got),  # noqa: B023
                              self.sent + ROUND_TIMEOUT)
            if not answer.done():  # a hang: stop here
                publish_failures += 1
                publish_error = publish_error or f"{self.current}: no answer to the POST within {ROUND_TIMEOUT} s"
                break
            if refused(answer):  # counted; no delivery is due
                publish_failures += 1
                publish_error = publish_error or f"{self.current}: {answer.exception() or answer.result()!r}"
                publisher.usable = publisher.usable and not answer.exception()
                bad_rounds += 1
                continue
            bad_rounds = bad_rounds + 1 if live() - self.got else 0  # a live subscriber went without
            # Lost: every subscriber's, a failed one's too, and in the warm-up too (a round lost there can last
            # past the window's start; a lost message is a defect whenever it happens).
            lost += self.n - len(self.got)
            if self.measuring:
                messages += 1
                deliveries_due += self.n
                lost_in_window += self.n - len(self.got)
                post_ms.append((publisher.answered - self.sent) * 1e3)
            alive = len(self.ready - self.failed_subs)
        if not self.measuring:  # nothing measured: still give the scenario its two lines
            ru0, w0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            print("start", flush=True)
        ru1, w1 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        print("end", flush=True)
        self.closing = True
        for sub in self.subs:
            sub.close()
        publisher.transport.close()
        await asyncio.sleep(0.05)  # the closes out before the process ends
        window = max(w1 - w0, 1e-9)
        cpu = sum(getattr(ru1, f) - getattr(ru0, f) for f in ("ru_utime", "ru_stime"))
        lat = sorted(self.latencies)

        def pct(values: list[float], p: float):
            return round(values[min(len(values) - 1, int(p * len(values)))], 3) if values else None

        never_ready = self.n - len(self.ready | self.failed_subs)
        return {
            "subscribers": self.n, "ready": len(self.ready), "window_s": round(window, 3), "messages": messages,
            "deliveries": len(lat), "deliveries_due": deliveries_due, "lost": lost, "lost_in_window": lost_in_window,
            "messages_sent": i, "late": self.late, "unexpected": self.unexpected,
            "p50_ms": pct(lat, 0.50), "p90_ms": pct(lat, 0.90), "p99_ms": pct(lat, 0.99),
            "p999_ms": pct(lat, 0.999), "max_ms": round(lat[-1], 3) if lat else None,
            "mean_ms": round(sum(lat) / len(lat), 3) if lat else None,
            "post_p50_ms": pct(sorted(post_ms), 0.5), "messages_per_s": round(messages / window, 1),
            "failures": sum(self.failures.values()) + never_ready,
            "failed_by": dict(self.failures, never_ready=never_ready), "publish_error": publish_error,
            "publish_failures": publish_failures,
            "publisher_reconnects": reconnects, "stopped_after_bad_rounds": bad_rounds >= MAX_BAD_ROUNDS,
            "errors_seen": self.errors[:5], "client_cpu_pct": round(cpu / window * 100, 1),
        }


def main() -> None:
    if len(sys.argv) != 8:
        raise SystemExit(f"usage: {sys.argv[0]} PORT KIND STREAM PUBLISH SUBSCRIBERS WARMUP DURATION")
    port, kind, stream, publish, n = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
    warmup, duration = float(sys.argv[6]), float(sys.argv[7])
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:  # pragma: no cover
        loop = asyncio.new_event_loop()
    result = loop.run_until_complete(Run(port, kind, stream, publish, n, warmup, duration).main())
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
