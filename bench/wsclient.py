"""The WebSocket echo client in plain Python asyncio, beside bench/wsclient.c (issue 22: hybrid's lead on 64 KiB
echo varied with the client). Same arguments and output as the C client, so the websocket scenario runs either:

    python -m bench.wsclient PORT PATH CONNS SIZE WARMUP DURATION

CONNS connections over raw sockets (asyncio streams, no WebSocket library): the handshake, then exactly one
message in flight on each, a binary frame masked once before the run (the same bytes every time), the whole echo
read back, the next message. Prints "start" when the measured window opens, "end" when it closes, then one JSON
line (the C client's keys that apply). Bounded: every read waits at most the run's length plus 5 s.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import resource
import struct
import sys
import time

MASK = b"\x11\x22\x33\x44"


def _frame(size: int) -> bytes:
    """One masked binary frame of ``size`` bytes, masked once (the client's per-message cost is a write)."""
    payload = bytes(i & 0xFF for i in range(size))
    if size < 126:
        head = struct.pack("!BB", 0x82, 0x80 | size)
    elif size < 65536:
        head = struct.pack("!BBH", 0x82, 0x80 | 126, size)
    else:
        head = struct.pack("!BBQ", 0x82, 0x80 | 127, size)
    masked = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    return head + MASK + masked


async def _read_message(reader: asyncio.StreamReader) -> int:
    """One unmasked frame from the server: its payload length (a close frame raises ConnectionError)."""
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", await reader.readexactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", await reader.readexactly(8))
    if b1 & 0x80:
        await reader.readexactly(4)
    await reader.readexactly(n)
    if b0 & 0x0F == 0x8:
        raise ConnectionError("closed by the server")
    return n


class Run:
    def __init__(self, port: int, path: str, conns: int, size: int, warmup: float, duration: float) -> None:
        self.port, self.path, self.conns, self.size = port, path, conns, size
        self.frame = _frame(size)
        self.t_start = time.monotonic() + warmup
        self.t_end = self.t_start + duration
        self.measuring = False
        self.rtts: list[float] = []
        self.window_msgs = 0
        self.total_msgs = 0
        self.per_conn: list[int] = []
        self.failures: dict[str, int] = {"connect": 0, "handshake": 0, "closed": 0, "protocol": 0,
                                         "wrong_size": 0, "no_handshake_by_end": 0}
        self.handshakes: list[float] = []
        self.open_at_end = 0

    async def conn(self, index: int) -> None:
        t_open = time.monotonic()
        limit = self.t_end - t_open + 5
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", self.port), limit)
        except (TimeoutError, OSError):
            self.failures["connect"] += 1
            return
        mine = 0
        try:
            key = base64.b64encode(os.urandom(16)).decode()
            writer.write((f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nUpgrade: websocket\r\n"
                          f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                         .encode())
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), limit)
            if not head.startswith(b"HTTP/1.1 101"):
                self.failures["handshake"] += 1
                return
            self.handshakes.append((time.monotonic() - t_open) * 1e3)
            while time.monotonic() < self.t_end:
                sent = time.monotonic()
                writer.write(self.frame)
                got = await asyncio.wait_for(_read_message(reader), self.t_end - sent + 5)
                if got != self.size:
                    self.failures["wrong_size"] += 1
                    return
                now = time.monotonic()
                self.total_msgs += 1
                if self.t_start <= sent and now <= self.t_end:
                    self.window_msgs += 1
                    mine += 1
                    self.rtts.append((now - sent) * 1e3)
            self.open_at_end += 1
            writer.write(b"\x88\x82" + MASK + bytes((0x03 ^ MASK[0], 0xE8 ^ MASK[1])))  # close 1000
        except (asyncio.IncompleteReadError, ConnectionError):
            self.failures["closed"] += 1
        except TimeoutError:
            self.failures["protocol"] += 1
        finally:
            self.per_conn.append(mine)
            writer.close()

    async def clock(self) -> None:
        await asyncio.sleep(max(0.0, self.t_start - time.monotonic()))
        self.ru0 = resource.getrusage(resource.RUSAGE_SELF)
        self.w0 = time.monotonic()
        print("start", flush=True)
        await asyncio.sleep(max(0.0, self.t_end - time.monotonic()))
        self.ru1 = resource.getrusage(resource.RUSAGE_SELF)
        self.w1 = time.monotonic()
        print("end", flush=True)

    async def main(self) -> dict:
        clock = asyncio.ensure_future(self.clock())
        await asyncio.gather(*(self.conn(i) for i in range(self.conns)))
        await clock
        window = max(self.w1 - self.w0, 1e-9)
        cpu = sum(getattr(self.ru1, f) - getattr(self.ru0, f) for f in ("ru_utime", "ru_stime"))
        rtts, hs = sorted(self.rtts), sorted(self.handshakes)

        def pct(values: list[float], p: float) -> float:
            return values[min(len(values) - 1, int(p * len(values)))] if values else -1.0

        return {"connections": self.conns, "message_bytes": self.size, "open_at_end": self.open_at_end,
                "window_s": round(window, 3), "messages": self.window_msgs,
                "msgs_per_s": round(self.window_msgs / window, 1), "rtt_p50_ms": round(pct(rtts, 0.5), 3),
                "rtt_p99_ms": round(pct(rtts, 0.99), 3), "rtt_max_ms": round(rtts[-1], 3) if rtts else -1.0,
                "handshake_p50_ms": round(pct(hs, 0.5), 3), "handshake_max_ms": round(hs[-1], 3) if hs else -1.0,
                "failures": sum(self.failures.values()), "failed_by": self.failures,
                "fewest_msgs_per_conn": min(self.per_conn, default=0),
                "most_msgs_per_conn": max(self.per_conn, default=0),
                "client_cpu_pct": round(cpu / window * 100, 1), "messages_total": self.total_msgs}


def main() -> None:
    if len(sys.argv) != 7:
        raise SystemExit(f"usage: {sys.argv[0]} PORT PATH CONNS SIZE WARMUP DURATION")
    port, path, conns, size = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    warmup, duration = float(sys.argv[5]), float(sys.argv[6])
    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:  # pragma: no cover
        loop = asyncio.new_event_loop()
    result = loop.run_until_complete(Run(port, path, conns, size, warmup, duration).main())
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
