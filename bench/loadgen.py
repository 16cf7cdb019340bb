"""Open-loop load generator (wrk cannot do open loop; Debian ships no wrk2).

Requests are scheduled at fixed times (rate R: request i at t0 + i/R), whatever the server does. A request whose
time has come takes an idle keep-alive connection, or waits in a FIFO for the next one to free up; its latency is
measured from its *scheduled* time, so a stalled server is charged for every request it delayed (coordinated
omission corrected, as in wrk2). Bounded: the schedule ends after --duration, stragglers get --drain seconds, then
whatever is still unanswered counts as timed out with latency >= its wait.

Run as ``python -m bench.loadgen --port P --rate R --duration D`` (pinned by the caller); prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import json
import resource
import sys
import time


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = min(len(sorted_values) - 1, max(0, int(round(p / 100.0 * len(sorted_values) + 0.5)) - 1))
    return sorted_values[k]


class Conn(asyncio.Protocol):
    def __init__(self, gen: Generator):
        self.gen = gen
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.inflight: float | None = None  # scheduled time of the request on the wire
        self.closed = False

    def connection_made(self, transport):
        self.transport = transport

    def connection_lost(self, exc):
        self.closed = True
        if self.inflight is not None:
            self.gen.errors += 1
            self.inflight = None
        self.gen.lost(self)

    def send(self, scheduled: float) -> None:
        self.inflight = scheduled
        self.transport.write(self.gen.request)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].lower()
            i = head.find(b"content-length:")
            if i < 0:
                self.gen.errors += 1  # the apps always send Content-Length
                self.transport.close()
                return
            j = head.find(b"\r\n", i)
            length = int(head[i + 15: j if j > 0 else len(head)])
            total = end + 4 + length
            if len(self.buf) < total:
                return
            if not head.startswith(b"http/1.1 2"):
                self.gen.non_2xx += 1
            self.buf = self.buf[total:]
            scheduled, self.inflight = self.inflight, None
            if scheduled is not None:
                self.gen.done(self, scheduled)


class Generator:
    def __init__(self, args):
        self.args = args
        body = args.body.encode() if args.body else b""
        head = f"{args.method} {args.path} HTTP/1.1\r\nHost: {args.host}:{args.port}\r\n"
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self.request = head.encode() + b"\r\n" + body
        self.idle: collections.deque[Conn] = collections.deque()
        self.pending: collections.deque[float] = collections.deque()
        self.latencies: list[float] = []
        self.errors = 0
        self.non_2xx = 0
        self.sent = 0
        self.measure_from = 0.0

    def lost(self, conn: Conn) -> None:
        try:
            self.idle.remove(conn)
        except ValueError:
            pass

    def done(self, conn: Conn, scheduled: float) -> None:
        now = time.perf_counter()
        if scheduled >= self.measure_from:
            self.latencies.append(now - scheduled)
        if self.pending:
            conn.send(self.pending.popleft())
        else:
            self.idle.append(conn)

    def dispatch(self, scheduled: float) -> None:
        self.sent += 1
        while self.idle:
            conn = self.idle.popleft()
            if not conn.closed:
                conn.send(scheduled)
                return
        self.pending.append(scheduled)

    async def run(self) -> dict:
        a = self.args
        self.loop = asyncio.get_running_loop()
        conns = []
        for _ in range(a.connections):
            _, proto = await self.loop.create_connection(lambda: Conn(self), a.host, a.port)
            conns.append(proto)
            self.idle.append(proto)
        ru = resource.getrusage(resource.RUSAGE_SELF)
        self.cpu0 = ru.ru_utime + ru.ru_stime
        interval = 1.0 / a.rate
        t0 = time.perf_counter() + 0.05
        self.measure_from = t0 + a.warmup
        total = int((a.warmup + a.duration) * a.rate)
        i = 0
        max_lag = 0.0
        while i < total:
            now = time.perf_counter()
            due = min(total, int((now - t0) / interval) + 1) if now >= t0 else 0
            if due > i + 1:
                max_lag = max(max_lag, now - (t0 + i * interval))
            while i < due:
                self.dispatch(t0 + i * interval)
                i += 1
            await asyncio.sleep(0.0005)
        end_schedule = time.perf_counter()
        deadline = end_schedule + a.drain
        while time.perf_counter() < deadline and (self.pending or any(c.inflight is not None for c in conns)):
            await asyncio.sleep(0.01)
        stuck = list(self.pending) + [c.inflight for c in conns if c.inflight is not None]
        now = time.perf_counter()
        timeouts = 0
        for scheduled in stuck:
            if scheduled >= self.measure_from:
                self.latencies.append(now - scheduled)  # a lower bound: it never finished
                timeouts += 1
        for c in conns:
            if c.transport is not None:
                c.transport.close()
        cpu = resource.getrusage(resource.RUSAGE_SELF)
        cpu_s = cpu.ru_utime + cpu.ru_stime - self.cpu0
        lat = sorted(self.latencies)
        ms = lambda v: round(v * 1000, 3)  # noqa: E731
        measured = len(lat)
        return {
            "offered_rps": a.rate,
            "achieved_rps": round((measured - timeouts) / a.duration, 1),
            "requests": measured,
            "timeouts": timeouts,
            "errors": self.errors,
            "non_2xx": self.non_2xx,
            "p50_ms": ms(percentile(lat, 50)),
            "p90_ms": ms(percentile(lat, 90)),
            "p99_ms": ms(percentile(lat, 99)),
            "p999_ms": ms(percentile(lat, 99.9)),
            "max_ms": ms(lat[-1]) if lat else None,
            "generator_max_lag_ms": ms(max_lag),
            "generator_cpu_pct": round(cpu_s / (a.warmup + a.duration) * 100),
        }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--path", default="/")
    p.add_argument("--method", default="GET")
    p.add_argument("--body", default="")
    p.add_argument("--rate", type=float, required=True, help="requests per second, offered")
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=1.0, help="seconds at the rate before measuring")
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--drain", type=float, default=10.0)
    args = p.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        p.error("loopback only")
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    gc.disable()  # a collection pause would be charged to the server

    async def go():
        return await Generator(args).run()

    result = asyncio.run(go())
    json.dump(result, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
