"""SocketStream (hybrid/_speedups/streams.pyx) over real sockets (socketpair and TCP on 127.0.0.1) and uvloop.

Every await is bounded (``run`` and ``asyncio.wait_for`` with a few seconds), so a waiter that is never woken
fails the test quickly instead of hanging it.
"""

import array
import asyncio
import gc
import hashlib
import select
import socket
import threading
import time

import pytest
import uvloop
from hybrid._speedups.streams import SocketStream, StreamClosed

T = 5.0  # bound on any single wait
RECV_SIZE = 98304  # what the stream reads per readiness callback (streams.pyx RECV_SIZE)


@pytest.fixture
def loop():
    # A callback that raises, or a future whose exception nobody retrieved, only gets logged: fail on it.
    loop = uvloop.new_event_loop()
    errors = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    yield loop
    gc.collect()
    loop.close()
    assert not errors


def tcp_pair():
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname(), timeout=T)
        server, _ = listener.accept()
    for sock in (server, client):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return server, client


@pytest.fixture(params=["socketpair", "tcp"])
def pair(request):
    """(server, client): the server side non-blocking (the stream's), the client blocking with a timeout."""
    if request.param == "socketpair":
        server, client = socket.socketpair()
        client.settimeout(T)
    else:
        server, client = tcp_pair()
    server.setblocking(False)
    yield server, client
    server.close()
    client.close()


def run(loop, coro, timeout=T):
    return loop.run_until_complete(asyncio.wait_for(coro, timeout))


def recv_all(sock, until_eof=True, n=None):
    """Read from a blocking socket until EOF (or n bytes); a reset after EOF-worthy data also ends it."""
    out = bytearray()
    while n is None or len(out) < n:
        try:
            data = sock.recv(RECV_SIZE)
        except ConnectionResetError:
            break
        if not data:
            break
        out += data
    return bytes(out)


def fill(stream):
    """Write until some output waits in the stream (the client does not read). Bounded, even if write is broken."""
    for _ in range(1000):
        stream.write(b"x" * 65536)
        if stream.write_buffer_size():
            return
    pytest.fail("write() never buffered anything")


async def wait_until(predicate, timeout=T):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.005)


# -- reading -------------------------------------------------------------------------------------------------


def test_initial_bytes_are_read_before_the_socket(loop, pair):
    server, client = pair

    async def main():
        s = SocketStream(server, loop, b"hello ")
        client.sendall(b"world")
        assert await s.readexactly(11) == b"hello world"
        assert s.buffered() == 0

    run(loop, main())


def test_read_returns_what_is_buffered_up_to_n_and_empty_at_eof(loop, pair):
    server, client = pair

    async def main():
        s = SocketStream(server, loop, b"hello")
        assert await s.read(0) == b""
        assert await s.read(2) == b"he"
        assert await s.read() == b"llo"
        client.sendall(b"world")
        got = b""
        while len(got) < 5:
            got += await s.read(100)
        assert got == b"world"
        assert not s.at_eof()
        client.shutdown(socket.SHUT_WR)
        assert await s.read() == b""
        assert s.at_eof()
        assert await s.read(10) == b""

    run(loop, main())


def test_a_pending_read_is_woken_by_data_and_by_eof(loop, pair):
    server, client = pair

    async def main():
        s = SocketStream(server, loop)
        task = asyncio.ensure_future(s.read())
        await asyncio.sleep(0.02)
        assert not task.done()
        client.sendall(b"x")
        assert await asyncio.wait_for(task, T) == b"x"
        task = asyncio.ensure_future(s.read())
        await asyncio.sleep(0.02)
        client.close()
        assert await asyncio.wait_for(task, T) == b""

    run(loop, main())


def test_readexactly_and_incomplete_read_at_eof(loop, pair):
    server, client = pair

    async def main():
        s = SocketStream(server, loop, b"12345")
        client.sendall(b"67890")
        assert await s.readexactly(0) == b""
        assert await s.readexactly(10) == b"1234567890"
        client.sendall(b"abc")
        client.shutdown(socket.SHUT_WR)
        with pytest.raises(asyncio.IncompleteReadError) as info:
            await s.readexactly(5)
        assert info.value.partial == b"abc" and info.value.expected == 5
        assert s.at_eof()
        with pytest.raises(ValueError):
            await s.readexactly(-1)

    run(loop, main())


def test_readuntil_finds_a_separator_split_across_reads(loop, pair):
    server, client = pair

    async def main():
        s = SocketStream(server, loop, b"line one\nabc\r")
        assert await s.readuntil() == b"line one\n"
        task = asyncio.ensure_future(s.readuntil(b"\r\n"))
        await asyncio.sleep(0.02)
        assert not task.done()
        client.sendall(b"\ndef")
        assert await asyncio.wait_for(task, T) == b"abc\r\n"
        await wait_until(lambda: s.buffered() == 3)
        assert await s.read() == b"def"

    run(loop, main())


def test_readuntil_limit_overrun_keeps_the_data(loop, pair):
    server, client = pair

    async def main():
        # Separator found, but more than `limit` bytes before it.
        s = SocketStream(server, loop, b"x" * 100 + b"\nrest")
        with pytest.raises(asyncio.LimitOverrunError) as info:
            await s.readuntil(b"\n", limit=50)
        assert info.value.consumed == 100
        assert s.buffered() == 105
        assert await s.readuntil(b"\n", limit=100) == b"x" * 100 + b"\n"
        # No separator and already past the limit.
        client.sendall(b"y" * 200)
        await wait_until(lambda: s.buffered() == 204)
        with pytest.raises(asyncio.LimitOverrunError):
            await s.readuntil(b"\n", limit=50)
        assert s.buffered() == 204
        with pytest.raises(ValueError):
            await s.readuntil(b"")

    run(loop, main())


def test_readuntil_at_eof_raises_incomplete_read_with_the_partial_data(loop, pair):
    server, client = pair

    async def main():
        s = SocketStream(server, loop, b"par")
        client.sendall(b"tial\r")
        client.shutdown(socket.SHUT_WR)
        with pytest.raises(asyncio.IncompleteReadError) as info:
            await s.readuntil(b"\r\n")
        assert info.value.partial == b"partial\r" and info.value.expected is None
        assert s.at_eof()

    run(loop, main())


def test_only_one_reader_at_a_time_and_a_cancelled_read_leaves_the_stream_usable(loop, pair):
    server, client = pair

    async def main():
        s = SocketStream(server, loop)
        first = asyncio.ensure_future(s.read())
        await asyncio.sleep(0.01)
        with pytest.raises(RuntimeError):
            await s.read()
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(s.readexactly(3), 0.05)
        client.sendall(b"abc")
        assert await s.readexactly(3) == b"abc"

    run(loop, main())


def test_read_limit_pauses_reading_until_the_buffer_is_consumed(loop, pair):
    server, client = pair
    client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    client.setblocking(False)
    read_limit = 128 * 1024
    cap = 32 * 1024 * 1024
    chunk = bytes(range(256)) * 256  # 64 KiB
    sent = 0

    async def send_until_stalled():
        # Push bytes until the client's send blocks for 0.2 s although the loop is running.
        nonlocal sent
        idle_since = time.monotonic()
        while sent < cap and time.monotonic() - idle_since < 0.2:
            try:
                sent += client.send(chunk)
                idle_since = time.monotonic()
            except BlockingIOError:
                await asyncio.sleep(0.01)

    async def main():
        s = SocketStream(server, loop, read_limit=read_limit)
        await send_until_stalled()
        assert sent < cap, "the stream kept reading past read_limit"
        assert read_limit < s.buffered() <= read_limit + RECV_SIZE
        first = sent
        received = bytearray(await s.read())  # consuming resumes reading: the client can send again
        await send_until_stalled()
        assert sent > first
        assert s.buffered() <= read_limit + RECV_SIZE
        while len(received) < sent:
            received += await s.read()
        assert len(received) == sent
        assert received == (chunk * (sent // len(chunk) + 1))[:sent]

    run(loop, main(), timeout=30)


def test_initial_bytes_past_read_limit_are_served_then_reading_resumes(loop, pair):
    server, client = pair

    async def main():
        s = SocketStream(server, loop, b"a" * 100, read_limit=10)
        client.sendall(b"b")
        await asyncio.sleep(0.05)
        assert s.buffered() == 100  # paused from the start
        assert await s.read(100) == b"a" * 100
        assert await s.read() == b"b"

    run(loop, main())


def test_a_reader_needing_more_than_read_limit_is_not_starved(loop, pair):
    server, client = pair

    async def main():
        s = SocketStream(server, loop, read_limit=1000)
        threading.Thread(target=client.sendall, args=(b"z" * 300_000,), daemon=True).start()
        assert await s.readexactly(300_000) == b"z" * 300_000

    run(loop, main())


# -- writing ---------------------------------------------------------------------------------------------------


def test_write_sends_and_accepts_bytes_bytearray_memoryview(loop, pair):
    server, client = pair

    async def main():
        s = SocketStream(server, loop)
        s.write(b"ab")
        s.write(bytearray(b"cd"))
        s.write(memoryview(b"xefx")[1:3])
        s.write(memoryview(array.array("H", [0x6867])))  # a 2-byte item format counts as 2 bytes
        s.write(b"")
        s.writelines([b"i", bytearray(b"j"), memoryview(b"k"), b""])
        with pytest.raises(TypeError):
            s.write("text")
        await s.drain()
        assert s.write_buffer_size() == 0
        assert recv_all(client, n=11) == b"abcdefghijk"

    run(loop, main())


def test_large_write_to_a_slow_reader_stays_bounded_by_drain(loop, pair):
    server, client = pair
    total = 8 * 1024 * 1024
    chunk = 64 * 1024
    high_water = 64 * 1024
    payload = bytes(range(256)) * (total // 256)
    got = hashlib.sha256()
    received = 0

    def slow_reader():
        nonlocal received
        while True:
            data = client.recv(16384)
            if not data:
                return
            got.update(data)
            received += len(data)
            time.sleep(0.0005)

    async def main():
        s = SocketStream(server, loop, high_water=high_water)
        reader = threading.Thread(target=slow_reader, daemon=True)
        reader.start()
        most = waited = 0
        for i in range(0, total, chunk):
            s.write(payload[i:i + chunk])
            most = max(most, s.write_buffer_size())
            if s.write_buffer_size() > high_water:
                waited += 1
            await s.drain()
            assert s.write_buffer_size() <= high_water
        assert most <= high_water + chunk
        assert waited > 0, "the reader never fell behind: the test did not exercise drain()"
        await s.close()
        return reader

    reader = run(loop, main(), timeout=60)
    reader.join(T)
    assert received == total and got.digest() == hashlib.sha256(payload).digest()


def test_buffered_output_is_a_snapshot_of_a_mutable_buffer(loop, pair):
    server, client = pair
    size = 8 * 1024 * 1024

    async def main():
        s = SocketStream(server, loop)
        data = bytearray(b"A" * size)
        s.write(data)
        assert s.write_buffer_size() > 0  # the client is not reading: most of it waits in the stream
        data[:] = b"B" * size  # must neither change what is sent nor fail (no view of it is kept)
        data.clear()
        parts = [bytearray(b"C" * size), b"D" * 10]
        s.writelines(parts)
        parts[0][:] = b"E" * size
        reader = asyncio.get_running_loop().run_in_executor(None, recv_all, client, False, 2 * size + 10)
        await s.close()
        return await asyncio.wait_for(reader, T)

    received = run(loop, main(), timeout=30)
    assert received == b"A" * size + b"C" * size + b"D" * 10


def test_writelines_partially_sent_keeps_order(loop, pair):
    server, client = pair
    parts = [bytes([i]) * (300_000 + i) for i in range(20)]

    async def main():
        s = SocketStream(server, loop)
        s.writelines(parts[:10])
        s.writelines(bytearray(p) for p in parts[10:])
        reader = asyncio.get_running_loop().run_in_executor(None, recv_all, client)
        await s.close()
        return await asyncio.wait_for(reader, T)

    assert run(loop, main(), timeout=30) == b"".join(parts)


def test_peer_closing_mid_write_raises_stream_closed(loop, pair):
    server, client = pair
    assert issubclass(StreamClosed, OSError) and issubclass(StreamClosed, ConnectionError)

    async def main():
        s = SocketStream(server, loop)
        loop.call_later(0.1, client.close)  # with unread data: a reset
        with pytest.raises(StreamClosed):
            for _ in range(1000):  # bounded: with a drain() that never waits the close would never run
                s.write(b"x" * 65536)
                await s.drain()
        assert s.peer_gone and s.write_buffer_size() == 0
        with pytest.raises(StreamClosed):
            s.write(b"more")
        with pytest.raises(StreamClosed):
            s.writelines([b"more", b"again"])
        with pytest.raises(StreamClosed):
            await s.drain()
        await s.wait_eof()
        assert await s.read() == b""
        s.abort()

    run(loop, main())


def test_a_pending_drain_gets_stream_closed_when_the_peer_resets(loop, pair):
    server, client = pair

    async def main():
        s = SocketStream(server, loop, high_water=0)
        fill(s)
        drain = asyncio.ensure_future(s.drain())
        await asyncio.sleep(0.05)
        assert not drain.done()
        client.close()
        with pytest.raises(StreamClosed):
            await asyncio.wait_for(drain, T)
        assert s.peer_gone

    run(loop, main())


def test_a_reset_is_noticed_by_a_write_while_reading_is_paused(loop, pair):
    server, client = pair

    async def main():
        # Paused from the start (more than read_limit unconsumed): only the writer can learn the peer is gone.
        s = SocketStream(server, loop, b"x" * 2000, high_water=0, read_limit=1000)
        fill(s)
        drain = asyncio.ensure_future(s.drain())
        await asyncio.sleep(0.05)
        assert not drain.done()
        client.close()
        with pytest.raises(StreamClosed):
            await asyncio.wait_for(drain, T)
        assert s.peer_gone and s.buffered() == 2000
        s.abort()

    run(loop, main())


# -- EOF and disconnects -------------------------------------------------------------------------------------------


def test_wait_eof_returns_when_the_peer_closes_while_the_app_only_writes(loop, pair):
    server, client = pair

    async def main():
        s = SocketStream(server, loop)

        async def ticker():
            while True:
                s.write(b"tick\n")
                await s.drain()
                await asyncio.sleep(0.01)

        writer = asyncio.ensure_future(ticker())
        watcher = asyncio.ensure_future(s.wait_eof())
        await asyncio.sleep(0.05)
        assert not watcher.done()
        client.close()
        await asyncio.wait_for(watcher, T)
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
        s.abort()

    run(loop, main())


def test_a_reset_wakes_a_pending_read_with_eof(loop, pair):
    server, client = pair

    async def main():
        s = SocketStream(server, loop)
        s.write(b"unread")  # closing with unread data resets the connection (TCP and unix sockets)
        await asyncio.sleep(0.02)
        read = asyncio.ensure_future(s.read())
        await asyncio.sleep(0.02)
        assert not read.done()
        client.close()
        assert await asyncio.wait_for(read, T) == b""
        assert s.peer_gone and s.at_eof()
        with pytest.raises(StreamClosed) as info:
            s.write(b"x")
        assert isinstance(info.value.__cause__, OSError)
        await s.wait_eof()
        s.abort()

    run(loop, main())


def test_half_close_is_eof_but_writes_still_reach_the_client(loop, pair):
    server, client = pair

    async def main():
        s = SocketStream(server, loop, b"request")
        client.shutdown(socket.SHUT_WR)
        await s.wait_eof()
        assert not s.at_eof() and not s.peer_gone  # the request is still buffered
        assert await s.read() == b"request"
        assert await s.read() == b"" and s.at_eof()
        s.write(b"response")
        await s.close()
        assert s.closed

    run(loop, main())
    assert recv_all(client) == b"response"


# -- abort, close, detach ----------------------------------------------------------------------------------------


def test_abort_wakes_a_pending_read_drain_and_wait_eof(loop, pair):
    server, client = pair

    async def main():
        s = SocketStream(server, loop, high_water=0)
        fill(s)
        read = asyncio.ensure_future(s.read())
        drain = asyncio.ensure_future(s.drain())
        eof = asyncio.ensure_future(s.wait_eof())
        await asyncio.sleep(0.05)
        assert not (read.done() or drain.done() or eof.done())
        s.abort()
        assert await asyncio.wait_for(read, T) == b""
        with pytest.raises(StreamClosed):
            await asyncio.wait_for(drain, T)
        await asyncio.wait_for(eof, T)
        assert s.closed and s.write_buffer_size() == 0 and server.fileno() == -1
        with pytest.raises(StreamClosed):
            s.write(b"x")
        s.abort()  # twice is fine
        await s.close()

    run(loop, main())


def test_close_wakes_a_pending_read_and_wait_eof(loop, pair):
    server, client = pair

    async def main():
        s = SocketStream(server, loop)
        read = asyncio.ensure_future(s.readexactly(10))
        eof = asyncio.ensure_future(s.wait_eof())
        await asyncio.sleep(0.02)
        await s.close()
        with pytest.raises(asyncio.IncompleteReadError):
            await asyncio.wait_for(read, T)
        await asyncio.wait_for(eof, T)
        assert server.fileno() == -1

    run(loop, main())
    assert recv_all(client) == b""


def test_close_flushes_then_closes(loop, pair):
    server, client = pair
    payload = bytes(range(256)) * (16 * 1024)  # 4 MiB

    async def main():
        s = SocketStream(server, loop)
        s.write(payload)
        assert s.write_buffer_size() > 0
        reader = asyncio.get_running_loop().run_in_executor(None, recv_all, client)
        await s.close()
        assert s.closed and server.fileno() == -1
        with pytest.raises(StreamClosed):
            s.write(b"late")
        return await asyncio.wait_for(reader, T)

    assert run(loop, main()) == payload


def test_close_gives_up_after_its_timeout(loop, pair):
    server, client = pair

    async def main():
        s = SocketStream(server, loop)
        s.write(b"x" * (8 * 1024 * 1024))  # the client never reads
        started = time.monotonic()
        await s.close(timeout=0.2)
        assert 0.15 < time.monotonic() - started < 2
        assert server.fileno() == -1 and s.write_buffer_size() == 0

    run(loop, main())


def test_detach_returns_the_open_socket_and_the_unread_bytes(loop, pair):
    server, client = pair

    async def main():
        s = SocketStream(server, loop, b"GET /1\r\nGET /2")
        assert await s.readuntil(b"\r\n") == b"GET /1\r\n"
        client.sendall(b"\r\n")
        await wait_until(lambda: s.buffered() == 8)
        s.write(b"reply 1")
        await s.drain()
        watcher = asyncio.ensure_future(s.wait_eof())
        await asyncio.sleep(0)
        sock, unread = s.detach()
        assert sock is server and sock.fileno() != -1
        assert unread == b"GET /2\r\n"
        assert s.closed and not s.peer_gone
        with pytest.raises(StreamClosed):
            await asyncio.wait_for(watcher, T)  # a watcher left running is told, not left hanging
        with pytest.raises(StreamClosed):
            await s.read()
        with pytest.raises(StreamClosed):
            s.write(b"x")
        with pytest.raises(RuntimeError):
            s.detach()
        s.abort()  # the stream no longer owns the socket: neither of these may close it
        await s.close()
        assert sock.fileno() != -1
        # The loop no longer watches it: bytes now arriving stay in the socket for its new owner.
        client.sendall(b"GET /3\r\n")
        await asyncio.sleep(0.05)
        assert select.select([sock], [], [], T)[0]
        assert sock.recv(100) == b"GET /3\r\n"
        sock.send(b"reply 2")
        # Handed back to the pool later: a new stream over the same socket works.
        again = SocketStream(sock, loop)
        client.sendall(b"ping")
        assert await again.readexactly(4) == b"ping"
        again.write(b"pong")
        await again.close()

    run(loop, main())
    assert recv_all(client) == b"reply 1reply 2pong"


def test_detach_with_unsent_output_is_refused(loop, pair):
    server, client = pair

    async def main():
        s = SocketStream(server, loop)
        s.write(b"x" * (8 * 1024 * 1024))
        assert s.write_buffer_size() > 0
        with pytest.raises(RuntimeError):
            s.detach()
        assert server.fileno() != -1 and not s.closed
        s.abort()

    run(loop, main())


def test_a_blocking_socket_is_refused(loop):
    a, b = socket.socketpair()
    with a, b, pytest.raises(ValueError):
        SocketStream(a, loop)


def test_data_callback_delivers_buffered_then_arriving_bytes_then_eof(loop, pair):
    """The pool's streams read by callback (set_data_callback + take, StreamConnection): bytes that arrived
    before the callback was set come first, later bytes as they arrive, and EOF calls it once more with nothing
    left to take."""
    server, client = pair
    client.sendall(b"early")
    stream = SocketStream(server, loop, initial=b"head-")
    got = []
    eof = loop.create_future()

    def on_data():
        data = stream.take()
        if data:
            got.append(data)
            if b"".join(got) == b"head-early":
                client.sendall(b"-late")
            elif b"".join(got).endswith(b"-late"):
                client.shutdown(socket.SHUT_WR)
        elif stream.at_eof() and not eof.done():
            eof.set_result(b"".join(got))

    async def go():
        await asyncio.sleep(0.05)  # "early" is buffered by the eager reader before the callback is set
        stream.set_data_callback(on_data)
        return await eof

    assert run(loop, go()) == b"head-early-late"
    stream.abort()


def test_data_callback_none_stops_delivery_and_detach_keeps_unread_bytes(loop, pair):
    server, client = pair
    stream = SocketStream(server, loop)
    calls = []
    stream.set_data_callback(lambda: calls.append(stream.take()))

    async def go():
        client.sendall(b"one")
        for _ in range(100):
            if calls:
                break
            await asyncio.sleep(0.01)
        stream.set_data_callback(None)
        client.sendall(b"two")
        await asyncio.sleep(0.1)

    run(loop, go())
    assert calls == [b"one"]
    sock, unread = stream.detach()
    assert unread == b"two" and sock is server
    with pytest.raises(StreamClosed):
        stream.set_data_callback(lambda: None)
