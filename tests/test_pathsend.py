"""The ASGI ``http.response.pathsend`` extension (issue 24): files sent by the server, over real sockets with real
clients (httpx, curl, raw sockets), from Starlette's FileResponse and from raw ASGI messages.

Small files (up to pathsend.POOL_THRESHOLD) are sent by the worker, larger ones by the async pool's loop; every
body is checked byte for byte (sha256), and every error path is checked to close or answer 500, never to pass a
short body off as whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

import httpx
import pytest

from tests.support import Server, build_request
from tests.test_tls import base, client_context, pki, tls_args  # noqa: F401 (pki: a fixture)

pytestmark = pytest.mark.timeout(60)

APP = "tests.apps.files:app"
SMALL = 16 * 1024
LARGE = 8 * 1024 * 1024
HUGE = 48 * 1024 * 1024  # larger than every socket buffer on the way: a reader must really be served
STALL = 1.5  # --timeout-write-stall


def _content(n: int, seed: int) -> bytes:
    block = hashlib.sha256(b"%d" % seed).digest() * 32  # 1 KiB that differs per file
    return (block * (n // len(block) + 1))[:n]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("files")
    sums = {}
    for name, size, seed in (("small.bin", SMALL, 1), ("large.bin", LARGE, 2), ("huge.bin", HUGE, 3)):
        data = _content(size, seed)
        (d / name).write_bytes(data)
        sums[name] = hashlib.sha256(data).hexdigest()
    (d / "subdir").mkdir()
    os.mkfifo(d / "fifo")
    return d, sums


@pytest.fixture(scope="module")
def srv(files):
    with Server(APP, "--port", "0", "--timeout-write-stall", str(STALL), "--async-path", "/pool/*",
                env={"FILES_DIR": str(files[0])}) as s:
        yield s


def _raw(srv, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # (before connect: it sets the window)
    sock.settimeout(10)
    sock.connect(srv.addr)
    return sock


def _read_head(sock: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"closed before a whole head: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head, rest


def _header(head: bytes, name: bytes) -> bytes | None:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return None


def _read_responses(sock: socket.socket, n: int) -> list[tuple[bytes, bytes]]:
    """``n`` pipelined Content-Length responses: [(head, body)], and nothing after them."""
    out = []
    data = bytearray()
    for _ in range(n):
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"closed before a whole head: {data[:200]!r}"
            data += chunk
        head, _, data = data.partition(b"\r\n\r\n")
        length = int(_header(head, b"content-length"))
        while len(data) < length:
            chunk = sock.recv(1 << 20)
            assert chunk, f"closed after {len(data)} of {length} body bytes"
            data += chunk
        out.append((bytes(head), bytes(data[:length])))
        del data[:length]
    assert not data, "bytes past the last body: a next response would be misread"
    return out


def _read_response(sock: socket.socket) -> tuple[bytes, bytes]:
    return _read_responses(sock, 1)[0]


def _closed(sock: socket.socket, timeout: float = 5.0) -> bool:
    sock.settimeout(timeout)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True


def test_pathsend_is_advertised(srv):
    r = httpx.get(f"{srv.url}/ext", timeout=10)
    assert "http.response.pathsend" in r.text.split("\n")


@pytest.mark.parametrize("name", ["small.bin", "large.bin"])
def test_starlette_file_response_httpx(srv, files, name):
    with httpx.Client(timeout=20) as client:
        for _ in range(2):  # the second on the same keep-alive connection
            r = client.get(f"{srv.url}/fr/{name}")
            assert r.status_code == 200
            assert int(r.headers["content-length"]) == len(r.content)
            assert hashlib.sha256(r.content).hexdigest() == files[1][name]
            assert r.headers["etag"]  # (Starlette's own headers go out as sent)
        assert client.get(f"{srv.url}/text").text == "text"


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl not installed")
@pytest.mark.parametrize("name", ["small.bin", "large.bin"])
def test_starlette_file_response_curl(srv, files, name, tmp_path):
    out = tmp_path / "got"
    # Two URLs on one curl command: curl reuses the connection (keep-alive after a file).
    proc = subprocess.run(
        ["curl", "-sS", "--fail", "--max-time", "20", "-o", str(out), f"{srv.url}/fr/{name}",
         "-o", str(tmp_path / "text"), f"{srv.url}/text", "-w", "%{num_connects}\n"],
        capture_output=True, timeout=30,
    )
    assert proc.returncode == 0, proc.stderr
    assert hashlib.sha256(out.read_bytes()).hexdigest() == files[1][name]
    assert (tmp_path / "text").read_bytes() == b"text"
    assert proc.stdout.split() == [b"1", b"0"], "the second request should reuse the connection"


def test_head_sends_the_length_and_no_body(srv):
    with _raw(srv) as sock:
        # HEAD of both sizes, then a GET, all on one connection: a body sent after a HEAD would be misread.
        sock.sendall(build_request("HEAD", "/raw/small.bin") + build_request("HEAD", "/raw/large.bin")
                     + build_request("GET", "/text"))
        seen = b""
        deadline = time.monotonic() + 10
        while seen.count(b"\r\n\r\n") < 3 or not seen.endswith(b"text"):
            assert time.monotonic() < deadline, seen
            chunk = sock.recv(65536)
            assert chunk, seen
            seen += chunk
    first, second, third = seen.split(b"\r\n\r\n", 2)
    assert first.startswith(b"HTTP/1.1 200") and _header(first, b"content-length") == b"%d" % SMALL
    assert second.startswith(b"HTTP/1.1 200") and _header(second, b"content-length") == b"%d" % LARGE
    assert third.startswith(b"HTTP/1.1 200") and third.endswith(b"\r\n\r\ntext")


def test_starlette_range_request(srv, files):
    # Starlette answers a Range itself, with body messages (no pathsend): the bytes must still be right.
    data = (files[0] / "large.bin").read_bytes()
    r = httpx.get(f"{srv.url}/fr/large.bin", headers={"Range": "bytes=1000-1999"}, timeout=10)
    assert r.status_code == 206 and r.content == data[1000:2000]


def test_raw_pathsend_with_and_without_content_length(srv, files):
    with _raw(srv) as sock:
        sock.sendall(build_request("GET", f"/raw/small.bin?cl={SMALL}") + build_request("GET", "/raw/small.bin")
                     + build_request("GET", "/raw/large.bin"))
        names = ("small.bin", "small.bin", "large.bin")
        for name, (head, body) in zip(names, _read_responses(sock, 3), strict=True):
            assert head.startswith(b"HTTP/1.1 200"), head
            assert hashlib.sha256(body).hexdigest() == files[1][name]


@pytest.mark.parametrize(("target", "logged"), [
    (f"/raw/small.bin?cl={SMALL - 1}", f"Content-Length '{SMALL - 1}' but"),  # not the file's size
    (f"/raw/small.bin?cl={SMALL + 1}", f"has {SMALL} bytes"),
    ("/raw/missing.bin", "missing.bin': No such file or directory"),
    ("/raw/subdir", "subdir' is not a regular file"),  # a directory
    ("/raw/fifo", "fifo' is not a regular file"),  # a FIFO (must not hang in open)
    ("/fr/subdir", "subdir is not a file"),  # (Starlette's own check, before it sends anything)
])
def test_errors_before_the_head_are_500(srv, target, logged):
    with _raw(srv) as sock:
        sock.sendall(build_request("GET", target))
        head, body = _read_response(sock)
        assert head.startswith(b"HTTP/1.1 500"), head
        assert _closed(sock)
    deadline = time.monotonic() + 5
    while logged not in srv.output and time.monotonic() < deadline:
        time.sleep(0.05)
    assert logged in srv.output


def _shrinking(srv, sock, path) -> None:
    data = _content(LARGE, 7)
    path.write_bytes(data)
    sock.sendall(build_request("GET", f"/raw/{path.name}"))
    head, body = _read_head(sock)
    assert _header(head, b"content-length") == b"%d" % LARGE
    while len(body) < 64 * 1024:
        chunk = sock.recv(65536)
        assert chunk, f"closed after {len(body)} bytes: {head!r}"
        body += chunk
    os.truncate(path, LARGE // 2)  # while the server still sends it
    sock.settimeout(10)
    started = time.monotonic()
    while True:
        chunk = sock.recv(1 << 20)
        if not chunk:
            break
        body += chunk
    assert len(body) < LARGE, "a short file must not be passed off as the whole body"
    assert body == data[:len(body)]
    assert time.monotonic() - started < 4, "not closed at once (an idle keep-alive connection closed later?)"
    deadline = time.monotonic() + 5
    while "shrank while it was sent" not in srv.output and time.monotonic() < deadline:
        time.sleep(0.05)
    assert f"{path.name}' shrank while it was sent" in srv.output


def test_shrinking_file_closes_the_connection(srv, files):
    with _raw(srv, rcvbuf=32 * 1024) as sock:
        _shrinking(srv, sock, files[0] / "shrinks.bin")


def test_shrinking_file_over_tls_closes_the_connection(files, pki):  # noqa: F811 (the fixture)
    with Server(APP, *tls_args(pki), env={"FILES_DIR": str(files[0])}) as srv:
        raw = _raw(srv, rcvbuf=32 * 1024)
        with client_context(pki).wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            _shrinking(srv, sock, files[0] / "shrinks-tls.bin")


def test_file_unlinked_while_sent_is_still_sent_whole(srv, files):
    path = files[0] / "unlinked.bin"
    data = _content(LARGE, 8)
    path.write_bytes(data)
    with _raw(srv, rcvbuf=32 * 1024) as sock:
        sock.sendall(build_request("GET", "/raw/unlinked.bin") + build_request("GET", "/text"))
        head, body = _read_head(sock)
        while len(body) < 64 * 1024:
            chunk = sock.recv(65536)
            assert chunk, f"closed after {len(body)} bytes: {head!r}"
            body += chunk
        path.unlink()  # the open descriptor still reads the whole file
        while len(body) < LARGE + 200:
            chunk = sock.recv(1 << 20)
            assert chunk, f"closed after {len(body)} bytes"
            body += chunk
            if body.endswith(b"\r\n\r\ntext"):
                break
    assert body[:LARGE] == data
    assert body[LARGE:].startswith(b"HTTP/1.1 200") and body.endswith(b"text")


def test_write_stall_cuts_a_reader_that_takes_nothing(srv):
    with _raw(srv, rcvbuf=16 * 1024) as sock:
        sock.sendall(build_request("GET", "/raw/huge.bin"))
        head, body = _read_head(sock)
        time.sleep(STALL + 1.5)  # read nothing: the server must give up within a tick of --timeout-write-stall
        received = len(body)
        sock.settimeout(10)
        try:
            while chunk := sock.recv(1 << 20):  # what the socket buffers still held, then the end
                received += len(chunk)
        except ConnectionResetError:
            pass
    assert received < HUGE // 2, f"{received} of {HUGE} bytes: the stalled download was not cut"
    assert "--timeout-write-stall" in srv.output


def _rate_beside_a_blocking_handler(sock, url: str, want: str, verify=True) -> None:
    """Download huge.bin on ``sock`` while a handler blocks the (only) worker thread: it must go on at rate."""
    sock.sendall(build_request("GET", "/fr/huge.bin"))
    head, body = _read_head(sock)
    received = len(body)
    digest = hashlib.sha256(body)
    blocker = threading.Thread(target=lambda: httpx.get(f"{url}/sleep?s=2", timeout=10, verify=verify))
    blocker.start()
    time.sleep(0.3)  # the handler is in time.sleep now
    window_end = time.monotonic() + 1.2
    during = 0
    while received < HUGE:
        chunk = sock.recv(1 << 20)
        assert chunk, f"closed after {received} bytes"
        digest.update(chunk)
        received += len(chunk)
        if time.monotonic() < window_end:
            during += len(chunk)
    blocker.join(10)
    assert digest.hexdigest() == want
    # The socket buffers on the way hold a few MiB at most: more than that while the only worker thread slept
    # was sent meanwhile, by the pool.
    assert during > 16 * 1024 * 1024, f"only {during} bytes in 1.2 s while a handler blocked the worker"


def test_large_file_keeps_its_rate_beside_a_blocking_handler(srv, files):
    with _raw(srv, rcvbuf=64 * 1024) as sock:
        _rate_beside_a_blocking_handler(sock, srv.url, files[1]["huge.bin"])


def test_large_file_over_tls_keeps_its_rate_beside_a_blocking_handler(files, pki):  # noqa: F811 (the fixture)
    with Server(APP, *tls_args(pki), env={"FILES_DIR": str(files[0])}) as srv:
        raw = _raw(srv, rcvbuf=64 * 1024)
        with client_context(pki).wrap_socket(raw, server_hostname="127.0.0.1") as sock:
            _rate_beside_a_blocking_handler(sock, base(srv), files[1]["huge.bin"], verify=client_context(pki))


@pytest.mark.parametrize("name", ["small.bin", "large.bin"])
def test_file_response_on_a_pool_connection(srv, files, name):
    # Handed to the pool before the app ran (--async-path): the head goes through its SocketStream, the file by
    # sendfile once that is flushed; then the connection goes back to a worker for the next request.
    with httpx.Client(timeout=20) as client:
        r = client.get(f"{srv.url}/pool/fr/{name}")
        assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == files[1][name]
        assert client.get(f"{srv.url}/text").text == "text"


@pytest.mark.parametrize("mode", ["tls", "async"])
def test_file_response_over_tls_and_in_async_mode(files, pki, mode):  # noqa: F811 (pki: the fixture)
    args = tls_args(pki) if mode == "tls" else ["--port", "0", "--mode", "async"]
    with Server(APP, *args, env={"FILES_DIR": str(files[0])}) as srv:
        url = base(srv) if mode == "tls" else srv.url
        with httpx.Client(verify=client_context(pki), timeout=20) as client:
            for name in ("small.bin", "large.bin", "small.bin"):  # (one connection: keep-alive after each)
                r = client.get(f"{url}/fr/{name}")
                assert r.status_code == 200 and hashlib.sha256(r.content).hexdigest() == files[1][name]
            r = client.get(f"{url}/raw/missing.bin")
            assert r.status_code == 500


def test_sigterm_lets_a_download_from_the_pool_finish(files):
    # Graceful shutdown waits for requests in flight: a worker's request whose file the pool is sending is one,
    # and the pool's loop must outlive it.
    with Server(APP, "--port", "0", env={"FILES_DIR": str(files[0])}) as srv:
        with _raw(srv, rcvbuf=64 * 1024) as sock:
            sock.sendall(build_request("GET", "/raw/huge.bin"))
            head, body = _read_head(sock)
            time.sleep(0.3)  # the buffers are full: the rest is the pool's to send
            srv.signal(signal.SIGTERM)
            digest = hashlib.sha256(body)
            received = len(body)
            while received < HUGE:
                chunk = sock.recv(1 << 20)
                assert chunk, f"closed after {received} of {HUGE} bytes"
                digest.update(chunk)
                received += len(chunk)
            assert _header(head, b"connection") == b"close" or _closed(sock)
        assert digest.hexdigest() == files[1]["huge.bin"]
        assert srv.wait(15) == 0, srv.output


@pytest.mark.parametrize("mode", ["plain", "tls"])
def test_graceful_bound_ends_a_stalled_download_from_the_pool(files, pki, mode):  # noqa: F811 (the fixture)
    # The client takes nothing: the pool's job waits on the socket when SIGTERM comes. At the bound the request
    # is cut short, and the pool's job with it (cancelled, not left pending in a stopped loop): exit in time.
    args = tls_args(pki) if mode == "tls" else ["--port", "0"]
    with Server(APP, *args, "--timeout-graceful-shutdown", "3", env={"FILES_DIR": str(files[0])}) as srv:
        raw = _raw(srv, rcvbuf=16 * 1024)
        sock = client_context(pki).wrap_socket(raw, server_hostname="127.0.0.1") if mode == "tls" else raw
        with sock:
            sock.sendall(build_request("GET", "/raw/huge.bin"))
            _read_head(sock)
            time.sleep(0.5)
            started = time.monotonic()
            srv.signal(signal.SIGTERM)
            code = srv.wait(10)
            took = time.monotonic() - started
    assert code is not None and took < 5, f"exit {code} after {took:.1f} s:\n{srv.output}"
    for sign in ("Traceback", "never retrieved", "destroyed but it is pending"):
        assert sign not in srv.output, srv.output


def test_access_log_bytes_and_http10(files):
    # The access log's bytes are the file bytes sent (by the worker, or counted by the pool's job); an HTTP/1.0
    # client gets Content-Length framing and the connection closes after.
    with Server(APP, "--port", "0", "--access-log-format", "json", env={"FILES_DIR": str(files[0])}) as srv:
        with _raw(srv, rcvbuf=64 * 1024) as sock:
            sock.sendall(build_request("GET", "/raw/small.bin") + build_request("HEAD", "/raw/large.bin")
                         + build_request("GET", "/raw/huge.bin"))
            got = _read_responses_head_aware(sock)
        assert [len(body) for _head, body in got] == [SMALL, 0, HUGE]
        with _raw(srv) as sock:
            sock.sendall(build_request("GET", "/raw/small.bin", version="HTTP/1.0"))
            head, body = _read_response(sock)
            assert head.startswith(b"HTTP/1.1 200") and len(body) == SMALL
            assert _closed(sock)
        deadline = time.monotonic() + 5
        while srv.output.count('"path": "/raw/') + srv.output.count('"path":"/raw/') < 4:
            assert time.monotonic() < deadline, srv.output
            time.sleep(0.05)
    records = [json.loads(line[line.index("{"):]) for line in srv.output.splitlines() if '"/raw/' in line]
    assert [(r["method"], r["path"], r["status"], r["bytes"]) for r in records] == [
        ("GET", "/raw/small.bin", 200, SMALL), ("HEAD", "/raw/large.bin", 200, 0),
        ("GET", "/raw/huge.bin", 200, HUGE), ("GET", "/raw/small.bin", 200, SMALL),
    ]


def _read_responses_head_aware(sock: socket.socket) -> list[tuple[bytes, bytes]]:
    """Three pipelined responses, the second to a HEAD (its Content-Length announces a body it does not have)."""
    out = []
    data = bytearray()
    for method in ("GET", "HEAD", "GET"):
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(1 << 20)
            assert chunk, f"closed before a whole head: {data[:200]!r}"
            data += chunk
        head, _, data = data.partition(b"\r\n\r\n")
        length = 0 if method == "HEAD" else int(_header(head, b"content-length"))
        while len(data) < length:
            chunk = sock.recv(1 << 20)
            assert chunk, f"closed after {len(data)} of {length} body bytes"
            data += chunk
        out.append((bytes(head), bytes(data[:length])))
        del data[:length]
    return out
