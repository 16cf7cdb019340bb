"""SocketStream (hybrid/_speedups/streams.pyx) over TLS: a non-blocking ``ssl.SSLSocket`` on real TCP on 127.0.0.1,
uvloop, trustme certificates. One ``recv`` of an SSLSocket gives one TLS record's bytes at most, so the stream
reads the records already in the socket in the same readiness: a burst of small records reaches the consumer as
one batch (as one ``recv(2)`` does without TLS), bytes OpenSSL decrypted but the stream did not take are not left
where epoll cannot see them, and an EOF or a bad record right behind the bytes is acted on after them.

Every await is bounded, so a byte left behind fails the test instead of hanging it.
"""

import asyncio
import fcntl
import os
import socket
import ssl
import struct
import termios
import threading
import time

import pytest
import trustme
from hybrid._speedups.streams import SocketStream

from tests.test_streams import RECV_SIZE, T, loop, run, tcp_pair  # noqa: F401 (loop: the fixture)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def contexts():
    ca = trustme.CA()
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ca.configure_trust(client)
    return server, client


@pytest.fixture
def tls_pair(contexts):
    """(server, client): TLS 1.3 over TCP, the server's SSLSocket non-blocking (the stream's)."""
    server_ctx, client_ctx = contexts
    raw_server, raw_client = tcp_pair()
    raw_server.settimeout(T)
    done = {}
    thread = threading.Thread(target=lambda: done.setdefault("server", server_ctx.wrap_socket(raw_server,
                                                                                              server_side=True)))
    thread.start()
    client = client_ctx.wrap_socket(raw_client, server_hostname="127.0.0.1")
    thread.join(T)
    server = done["server"]
    assert server.version() == "TLSv1.3"
    server.setblocking(False)
    yield server, client
    server.close()
    client.close()


def _queued(sock) -> int:
    return struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]


def _send_records(client, server, sizes) -> bytes:
    """One TLS record per size (each ``sendall`` is one), then wait until the server's socket holds them all
    (TLS 1.3 with AES-GCM: 22 bytes of framing a record)."""
    sent = b""
    for i, size in enumerate(sizes):
        chunk = bytes([65 + i % 26]) * size
        client.sendall(chunk)
        sent += chunk
    want = sum(sizes) + 22 * len(sizes)
    deadline = time.monotonic() + T
    while _queued(server) < want:
        assert time.monotonic() < deadline, (_queued(server), want)
        time.sleep(0.005)
    return sent


def test_a_burst_of_small_records_is_one_batch(loop, tls_pair):  # noqa: F811 (loop: the fixture)
    server, client = tls_pair
    sent = _send_records(client, server, [300] * 40)
    stream = SocketStream(server, loop)
    batches = []

    async def main():
        got = asyncio.Event()
        stream.set_data_callback(lambda: (batches.append(stream.take()), got.set()))
        await asyncio.wait_for(got.wait(), T)
        await asyncio.sleep(0.05)  # (a second callback, had the records come one by one, would be here now)

    run(loop, main())
    assert [len(b) for b in batches] == [len(sent)] and batches[0] == sent
    stream.abort()


def test_records_past_recv_size_are_all_read_even_inside_a_record(loop, tls_pair):  # noqa: F811 (loop: the fixture)
    # Ten 10,000-byte records: RECV_SIZE (98,304) ends inside the tenth, the last, whose rest OpenSSL then holds
    # decrypted, out of epoll's sight: nothing more comes, so a byte left there would never be read.
    server, client = tls_pair
    sizes = [10_000] * 10
    assert 90_000 < RECV_SIZE < 100_000
    sent = _send_records(client, server, sizes)
    stream = SocketStream(server, loop)

    async def main():
        return await stream.readexactly(len(sent))

    assert run(loop, main()) == sent
    stream.abort()


@pytest.mark.parametrize("end", ["close_notify", "fin"])
@pytest.mark.parametrize("how", ["callback", "read"])
def test_an_eof_right_behind_the_records_comes_after_their_bytes(loop, tls_pair, how, end):  # noqa: F811 (loop: the fixture)
    server, client = tls_pair
    sent = _send_records(client, server, [500] * 5)
    if end == "close_notify":  # (in the socket with the records: read in the same readiness)
        client.setblocking(False)
        with pytest.raises(ssl.SSLWantReadError):  # (sent; the server's own close_notify is not awaited)
            client.unwrap()
        deadline = time.monotonic() + T
        while _queued(server) < len(sent) + 22 * 5 + 24:  # (the alert's record: 24 bytes)
            assert time.monotonic() < deadline
            time.sleep(0.005)
    else:  # a TCP FIN without close_notify: OpenSSL's "ragged" EOF, which the SSLSocket reads as b""
        client.shutdown(socket.SHUT_WR)
    stream = SocketStream(server, loop)

    async def by_callback():
        chunks, ended = [], asyncio.Event()

        def on_data():
            data = stream.take()
            if data:
                chunks.append(data)
            if stream.at_eof():
                ended.set()

        stream.set_data_callback(on_data)
        await asyncio.wait_for(ended.wait(), T)
        return b"".join(chunks)

    async def by_read():
        chunks = []
        while data := await stream.read():
            chunks.append(data)
        return b"".join(chunks)

    assert run(loop, by_callback() if how == "callback" else by_read()) == sent
    assert stream.at_eof()
    stream.abort()


def test_a_bad_record_behind_good_ones_is_an_error_after_their_bytes(loop, tls_pair):  # noqa: F811 (loop: the fixture)
    # A forged application-data record (its tag cannot verify) right behind three good ones: OpenSSL reads and
    # rejects it in the same readiness, so nothing is left in the socket to wake the stream again: the error must
    # be acted on there, after the good bytes are delivered.
    server, client = tls_pair
    sent = _send_records(client, server, [400] * 3)
    forged = b"\x17\x03\x03\x00\x30" + bytes(range(48))
    with socket.socket(fileno=os.dup(client.fileno())) as raw:
        raw.sendall(forged)
    deadline = time.monotonic() + T
    while _queued(server) < len(sent) + 22 * 3 + len(forged):
        assert time.monotonic() < deadline
        time.sleep(0.005)
    stream = SocketStream(server, loop)

    async def main():
        chunks = []
        while data := await stream.read():
            chunks.append(data)
        return b"".join(chunks)

    assert run(loop, main()) == sent
    assert stream.peer_gone
    stream.abort()
