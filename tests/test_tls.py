"""TLS (issue 12): real server processes with trustme certificates, real clients (httpx, websockets, ssl sockets)
on 127.0.0.1. Every wait is bounded."""

from __future__ import annotations

import asyncio
import hashlib
import json
import select
import signal
import socket
import ssl
import threading
import time

import httpx
import pytest
import trustme
import websockets
from cryptography.hazmat.primitives import serialization

from tests.support import Server, run_cli

pytestmark = pytest.mark.timeout(90)

APP = "tests.apps.tls_app:app"
HANDSHAKE_TIMEOUT = 2.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """A CA, a server certificate for 127.0.0.1, a client certificate, and files for the server's options."""
    d = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1", "localhost")
    client_cert = ca.issue_cert("client@example.com")
    other = trustme.CA().issue_cert("127.0.0.1")  # a key that matches no certificate of ours
    files = {
        "chain": d / "chain.pem", "key": d / "key.pem", "ca": d / "ca.pem", "other_key": d / "other_key.pem",
        "enc_key": d / "enc_key.pem", "garbage": d / "garbage.pem",
    }
    files["chain"].write_bytes(b"".join(p.bytes() for p in server_cert.cert_chain_pems))
    server_cert.private_key_pem.write_to_path(str(files["key"]))
    ca.cert_pem.write_to_path(str(files["ca"]))
    other.private_key_pem.write_to_path(str(files["other_key"]))
    key = serialization.load_pem_private_key(server_cert.private_key_pem.bytes(), password=None)
    files["enc_key"].write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"s3cret"),
    ))
    files["garbage"].write_text("not a certificate\n")
    return {"authority": ca, "client": client_cert, **{k: str(v) for k, v in files.items()}}


def tls_args(pki, *extra: str) -> list[str]:
    return ["--port", "0", "--ssl-certfile", pki["chain"], "--ssl-keyfile", pki["key"], *extra]


@pytest.fixture(scope="module")
def srv(pki):
    with Server(APP, *tls_args(pki, "--timeout-tls-handshake", str(HANDSHAKE_TIMEOUT))) as server:
        yield server


def client_context(pki, *, cert: bool = False) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    pki["authority"].configure_trust(ctx)
    if cert:
        pki["client"].configure_cert(ctx)
    return ctx


def base(server: Server) -> str:
    return f"https://{server.host}:{server.port}"


def tls_socket(pki, server: Server, alpn=None) -> ssl.SSLSocket:
    ctx = client_context(pki)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    raw = socket.create_connection(server.addr, timeout=5)
    return ctx.wrap_socket(raw, server_hostname="127.0.0.1")


def read_to_eof(sock: socket.socket, timeout: float) -> tuple[bytes, float]:
    """Everything until the peer closes (EOF or reset), and when that was; fails after ``timeout``."""
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"not closed within {timeout} s (got {data[:80]!r})"
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError):
            return data, time.monotonic()
        except TimeoutError:
            raise AssertionError(f"not closed within {timeout} s (got {data[:80]!r})") from None
        if not chunk:
            return data, time.monotonic()
        data += chunk


# -- requests --------------------------------------------------------------------------------------------------


def test_get_post_scheme_https(srv, pki):
    with httpx.Client(verify=client_context(pki), timeout=10) as client:
        r = client.get(f"{base(srv)}/scope")
        assert r.status_code == 200
        assert r.json()["scheme"] == "https"
        assert r.json()["client"][0] == "127.0.0.1"
        r = client.post(f"{base(srv)}/echo", content=b"hello tls")
        assert r.json() == {"length": 9, "sha256": hashlib.sha256(b"hello tls").hexdigest()}


def test_keep_alive_over_tls(srv, pki):
    with httpx.Client(verify=client_context(pki), timeout=10) as client:
        ports = {client.get(f"{base(srv)}/scope").json()["client"][1] for _ in range(20)}
    assert len(ports) == 1, f"20 requests should ride one TLS connection, used {len(ports)}"


def test_large_response_and_upload(srv, pki):
    size = 6 * 1024 * 1024
    expected = bytes(range(256)) * (size // 256)
    with httpx.Client(verify=client_context(pki), timeout=30) as client:
        r = client.get(f"{base(srv)}/big?n={size}")
        assert r.status_code == 200 and len(r.content) == size and r.content == expected
        upload = bytes(reversed(expected))
        r = client.post(f"{base(srv)}/echo", content=upload)
        assert r.json() == {"length": size, "sha256": hashlib.sha256(upload).hexdigest()}
        # The connection is still good for more after both.
        assert client.get(f"{base(srv)}/scope").json()["scheme"] == "https"


def test_slow_reader_large_response(srv, pki):
    # The response does not fit in the socket buffers: the server's TLS writes wait for the client (WANT_WRITE)
    # and go on with the same bytes.
    size = 8 * 1024 * 1024
    with tls_socket(pki, srv) as sock:
        sock.sendall(b"GET /big?n=%d HTTP/1.1\r\nHost: x\r\n\r\n" % size)
        time.sleep(0.5)  # let the server fill every buffer first
        deadline = time.monotonic() + 30
        data = b""
        while b"\r\n\r\n" not in data:
            data += sock.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200")
        while len(body) < size:
            chunk = sock.recv(65536)
            assert chunk, f"closed after {len(body)} bytes"
            assert time.monotonic() < deadline, f"only {len(body)} bytes in 30 s"
            body += chunk
            time.sleep(0.0005)
        assert body == bytes(range(256)) * (size // 256)


def test_sse_stream_handed_off_keeps_tls_session(srv, pki):
    with httpx.Client(verify=client_context(pki), timeout=10) as client:
        port = client.get(f"{base(srv)}/scope").json()["client"][1]
        with client.stream("GET", f"{base(srv)}/sse", headers={"accept": "text/event-stream"}) as r:
            assert r.status_code == 200
            events = [line for line in r.iter_lines() if line.startswith("data:")]
        assert events == ["data: https"] + [f"data: {i}" for i in range(5)]
        # The pool gave the socket (and its TLS session) back to a worker: the same connection goes on.
        after = client.get(f"{base(srv)}/scope").json()
        assert after["client"][1] == port and after["scheme"] == "https"


def test_pipelined_behind_stream_over_tls(srv, pki):
    # Bytes the worker decrypted past the streamed request's head travel with the handoff and come back.
    with tls_socket(pki, srv) as sock:
        sock.sendall(b"GET /sse HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n"
                     b"GET /scope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data, _ = read_to_eof(sock, 10)
    assert data.count(b"HTTP/1.1 200") == 2
    assert b"data: 4" in data and b'"scheme": "https"' in data


def test_websocket_over_wss(srv, pki):
    async def talk():
        uri = f"wss://{srv.host}:{srv.port}/ws"
        async with websockets.connect(uri, ssl=client_context(pki), max_size=None) as ws:
            first = json.loads(await ws.recv())
            await ws.send("ping over tls")
            text = await ws.recv()
            blob = bytes(range(256)) * 4096  # 1 MiB, many TLS records
            await ws.send(blob)
            echoed = await ws.recv()
            return first, text, echoed == blob

    first, text, same = asyncio.run(asyncio.wait_for(talk(), 30))
    assert first == {"scheme": "wss"}
    assert text == "ping over tls"
    assert same


def test_alpn_http11(srv, pki):
    # (a client offering h2 too gets it: tests/test_h2.py)
    with tls_socket(pki, srv, alpn=["http/1.1"]) as sock:
        assert sock.selected_alpn_protocol() == "http/1.1"
        sock.sendall(b"GET /scope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data, _ = read_to_eof(sock, 5)
        assert data.startswith(b"HTTP/1.1 200")


# -- hostile clients -----------------------------------------------------------------------------------------


def client_hello() -> bytes:
    """The first flight of a real TLS client (its ClientHello), to trickle byte by byte."""
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
    with pytest.raises(ssl.SSLWantReadError):
        obj.do_handshake()
    return outgoing.read()


def test_silent_and_trickling_handshakes_are_closed_others_served(srv, pki):
    hello = client_hello()
    assert len(hello) > 20
    results = {}

    def silent():
        with socket.create_connection(srv.addr, timeout=5) as sock:
            t0 = time.monotonic()
            _, closed = read_to_eof(sock, HANDSHAKE_TIMEOUT + 4)
            results["silent"] = closed - t0

    def trickler():
        with socket.create_connection(srv.addr, timeout=5) as sock:
            t0 = time.monotonic()
            for i in range(len(hello)):
                try:
                    sock.send(hello[i:i + 1])
                except OSError:
                    break
                if select.select([sock], [], [], 1.0)[0]:  # one byte a second, until the server closes
                    break
                assert time.monotonic() - t0 < HANDSHAKE_TIMEOUT + 4, "trickler never closed"
            _, closed = read_to_eof(sock, 2)
            results["trickler"] = closed - t0
            results["trickled"] = i + 1

    threads = [threading.Thread(target=silent), threading.Thread(target=trickler)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    # Meanwhile, other clients (new connections, full handshakes) are served promptly.
    latencies = []
    with httpx.Client(verify=client_context(pki), timeout=5) as client:
        while any(t.is_alive() for t in threads) and len(latencies) < 40:
            t0 = time.monotonic()
            assert client.get(f"{base(srv)}/scope", headers={"connection": "close"}).status_code == 200
            latencies.append(time.monotonic() - t0)
            time.sleep(0.1)
    for t in threads:
        t.join(10)
    assert max(latencies) < 1.0, latencies
    # Closed once the handshake timeout passed (the sweep runs once a second), not before it.
    for who in ("silent", "trickler"):
        assert HANDSHAKE_TIMEOUT - 0.3 <= results[who] <= HANDSHAKE_TIMEOUT + 2.0, results
    assert 1 < results["trickled"] < len(hello), results


def test_handshake_flight_larger_than_socket_buffers(tmp_path, pki):
    # The server's first flight cannot leave at once (WANT_WRITE): the connection waits for EPOLLOUT and the
    # flight goes on as the client reads. A listening socket with a small send buffer (accepted sockets inherit
    # it, without autotuning) and a long certificate chain make that certain.
    leaf = pki["authority"].issue_cert("127.0.0.1")
    chain, key = tmp_path / "long_chain.pem", tmp_path / "long_key.pem"
    chain.write_bytes(b"".join(p.bytes() for p in leaf.cert_chain_pems) + pki["authority"].cert_pem.bytes() * 150)
    leaf.private_key_pem.write_to_path(str(key))
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    args = ["--fd", str(listener.fileno()), "--ssl-certfile", str(chain), "--ssl-keyfile", str(key),
            "--log-level", "debug"]
    with Server(APP, *args, pass_fds=[listener.fileno()]) as server:
        ctx = client_context(pki)
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(incoming, outgoing, server_hostname="127.0.0.1")
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
            sock.settimeout(5)
            sock.connect(listener.getsockname())
            deadline = time.monotonic() + 15
            while True:
                assert time.monotonic() < deadline, "handshake not done in 15 s"
                try:
                    obj.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    pass
                sent = outgoing.read()
                if sent:
                    sock.sendall(sent)
                    time.sleep(0.5)  # not reading yet: the flight backs up in the server's socket
                chunk = sock.recv(65536)
                assert chunk, "closed during the handshake"
                incoming.write(chunk)
            obj.write(b"GET /scope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            sock.sendall(outgoing.read())
            body = b""
            while True:
                try:
                    data = obj.read(65536)
                    if not data:
                        break  # the server's close_notify: a clean end (an SSLObject reads it as b"")
                    body += data
                except ssl.SSLWantReadError:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    incoming.write(chunk)
                except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                    break
        assert body.startswith(b"HTTP/1.1 200") and b'"scheme": "https"' in body, body[:200]
        assert "waits to write its flight" in server.output, "the flight fit in the buffers: nothing was tested"
    listener.close()


def test_plaintext_request_to_tls_port_is_closed(srv):
    with socket.create_connection(srv.addr, timeout=5) as sock:
        t0 = time.monotonic()
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        data, closed = read_to_eof(sock, 3)
    assert closed - t0 < 1.0, "a plain-text request must be refused at once, not left to the timeout"
    assert b"HTTP/1.1 200" not in data


# -- client certificates -----------------------------------------------------------------------------------------


def test_client_certificate_required(pki):
    args = tls_args(pki, "--ssl-cert-reqs", "2", "--ssl-ca-certs", pki["ca"])
    with Server(APP, *args) as server:
        with httpx.Client(verify=client_context(pki, cert=True), timeout=5) as client:
            assert client.get(f"{base(server)}/scope").json()["scheme"] == "https"
        with httpx.Client(verify=client_context(pki), timeout=5) as client:
            # TLS 1.3: the client finishes first, the server's refusal comes as an alert on its first read.
            with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
                client.get(f"{base(server)}/scope")
        with httpx.Client(verify=client_context(pki, cert=True), timeout=5) as client:
            assert client.get(f"{base(server)}/scope").status_code == 200  # still serving


def test_client_certificate_optional(pki):
    args = tls_args(pki, "--ssl-cert-reqs", "1", "--ssl-ca-certs", pki["ca"])
    with Server(APP, *args) as server:
        for cert in (True, False):
            with httpx.Client(verify=client_context(pki, cert=cert), timeout=5) as client:
                assert client.get(f"{base(server)}/scope").status_code == 200
        # A certificate the CA did not sign is refused even when optional.
        stranger = client_context(pki)
        trustme.CA().issue_cert("stranger@example.com").configure_cert(stranger)
        with httpx.Client(verify=stranger, timeout=5) as client:
            with pytest.raises((httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
                client.get(f"{base(server)}/scope")


def test_ssl_ciphers_apply_to_tls12(pki):
    with Server(APP, *tls_args(pki, "--ssl-ciphers", "ECDHE+AESGCM")) as server:
        def tls12_client(ciphers: str) -> ssl.SSLContext:
            ctx = client_context(pki)
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
            ctx.set_ciphers(ciphers)
            return ctx

        with tls_socket(pki, server) as sock:  # (TLS 1.3 suites are not what --ssl-ciphers sets)
            assert sock.version() == "TLSv1.3"
        raw = socket.create_connection(server.addr, timeout=5)
        with tls12_client("ECDHE-ECDSA-AES128-GCM-SHA256").wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            assert sock.cipher()[0] == "ECDHE-ECDSA-AES128-GCM-SHA256"
        raw = socket.create_connection(server.addr, timeout=5)
        with pytest.raises(ssl.SSLError):
            tls12_client("ECDHE-ECDSA-CHACHA20-POLY1305").wrap_socket(raw, server_hostname="127.0.0.1")
        raw.close()


# -- startup errors ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("case, option", [
    ("missing-cert", "--ssl-certfile"),
    ("garbage-cert", "--ssl-certfile"),
    ("missing-key", "--ssl-keyfile"),
    ("mismatch", "--ssl-keyfile"),
    ("wrong-password", "--ssl-keyfile-password"),
    ("no-password", "--ssl-keyfile-password"),
    ("missing-ca", "--ssl-ca-certs"),
    ("bad-ciphers", "--ssl-ciphers"),
])
@pytest.mark.parametrize("workers", ["1", "2"])
def test_bad_tls_options_fail_at_startup(pki, case, option, workers):
    cert, key = pki["chain"], pki["key"]
    extra = []
    if case == "missing-cert":
        cert = pki["chain"] + ".nope"
    elif case == "garbage-cert":
        cert = pki["garbage"]
    elif case == "missing-key":
        key = pki["key"] + ".nope"
    elif case == "mismatch":
        key = pki["other_key"]
    elif case == "wrong-password":
        key, extra = pki["enc_key"], ["--ssl-keyfile-password", "wrong"]
    elif case == "no-password":
        key = pki["enc_key"]
    elif case == "missing-ca":
        extra = ["--ssl-ca-certs", pki["ca"] + ".nope", "--ssl-cert-reqs", "2"]
    elif case == "bad-ciphers":
        extra = ["--ssl-ciphers", "NO-SUCH-CIPHER"]
    rc, out = run_cli(APP, "--port", "0", "--workers", workers, "--ssl-certfile", cert, "--ssl-keyfile", key,
                      *extra)
    assert rc == 3, f"exit code {rc}; output:\n{out}"
    assert "Listening on" not in out and "Traceback" not in out, out
    errors = [line for line in out.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 1 and option in errors[0], out


def test_encrypted_key_with_password_works(pki):
    args = ["--port", "0", "--ssl-certfile", pki["chain"], "--ssl-keyfile", pki["enc_key"],
            "--ssl-keyfile-password", "s3cret"]
    with Server(APP, *args) as server:
        with httpx.Client(verify=client_context(pki), timeout=5) as client:
            assert client.get(f"{base(server)}/scope").status_code == 200


def test_help_lists_tls_options():
    rc, out = run_cli("--help")
    assert rc == 0
    for option in ("--ssl-certfile", "--ssl-keyfile", "--ssl-keyfile-password", "--ssl-ca-certs", "--ssl-cert-reqs",
                   "--ssl-ciphers", "--timeout-tls-handshake"):
        assert option in out, option


def test_cert_reqs_needs_ca_certs(pki):
    rc, out = run_cli(APP, *tls_args(pki, "--ssl-cert-reqs", "2"))
    assert rc == 2 and "--ssl-cert-reqs" in out and "Traceback" not in out, out


def test_workers_serve_tls(pki):
    with Server(APP, *tls_args(pki, "--workers", "2")) as server:
        with httpx.Client(verify=client_context(pki), timeout=10) as client:
            for _ in range(4):
                r = client.get(f"{base(server)}/scope", headers={"connection": "close"})
                assert r.json()["scheme"] == "https"


# -- shutdown ----------------------------------------------------------------------------------------------------


def test_sigterm_with_tls_connections_open(pki):
    server = Server(APP, *tls_args(pki)).start()
    try:
        idle = tls_socket(pki, server)  # keep-alive, idle after one request
        idle.sendall(b"GET /scope HTTP/1.1\r\nHost: x\r\n\r\n")
        assert idle.recv(65536).startswith(b"HTTP/1.1 200")
        half = socket.create_connection(server.addr, timeout=5)  # still in its handshake
        half.sendall(client_hello()[:10])
        busy = tls_socket(pki, server)  # a request in flight when the signal comes
        busy.sendall(b"GET /sleep?s=1 HTTP/1.1\r\nHost: x\r\n\r\n")
        stream = tls_socket(pki, server)  # a stream in the async pool
        stream.sendall(b"GET /sse HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
        time.sleep(0.2)
        t0 = time.monotonic()
        server.signal(signal.SIGTERM)
        data, _ = read_to_eof(busy, 10)
        assert data.startswith(b"HTTP/1.1 200") and data.endswith(b"slept"), data
        assert b"connection: close" in data.lower()
        read_to_eof(idle, 5)
        read_to_eof(half, 5)
        data, _ = read_to_eof(stream, 10)
        assert b"data: 4" in data
        assert server.wait(10) == 0, server.output
        assert time.monotonic() - t0 < 8
        for sock in (idle, half, busy, stream):
            sock.close()
    finally:
        server.stop()


def test_mode_async_serves_tls_with_its_handshake_bounded(pki):
    """--mode async does the handshake as a task on the pool loop, with the same bound and the same scheme."""
    with Server(APP, *tls_args(pki, "--mode", "async", "--timeout-tls-handshake", "1")) as server:
        with httpx.Client(verify=client_context(pki), timeout=10) as client:
            for _ in range(3):
                r = client.get(base(server) + "/scope")
                assert r.status_code == 200 and r.json()["scheme"] == "https"
            body = bytes(range(256)) * 4096
            assert client.post(base(server) + "/echo", content=body).json()["length"] == len(body)
        silent = socket.create_connection(server.addr, timeout=10)
        t = time.monotonic()
        _data, closed_at = read_to_eof(silent, 5)
        assert closed_at - t < 3, "a silent client held its handshake past --timeout-tls-handshake"
        silent.close()


def test_timeout_write_stall_over_tls(pki):
    """A TLS client that stops reading a large response is cut off after --timeout-write-stall."""
    with Server(APP, *tls_args(pki, "--timeout-write-stall", "1")) as server:
        raw = socket.socket()
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        raw.connect(server.addr)
        sock = client_context(pki).wrap_socket(raw, server_hostname="127.0.0.1")
        sock.sendall(b"GET /big?n=50000000 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        time.sleep(3)  # reads nothing meanwhile
        got = 0
        sock.settimeout(5)
        try:
            while chunk := sock.recv(1 << 20):
                got += len(chunk)
        except (ConnectionResetError, ssl.SSLError, TimeoutError):
            pass
        sock.close()
        assert got < 50_000_000
        assert "--timeout-write-stall" in server.output, server.output[-2000:]
