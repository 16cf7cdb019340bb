"""Small files through ``http.response.pathsend`` (hybrid/pathsend_small.py): up to SMALL_FILE bytes with a
declared Content-Length they are read whole and sent with their head in one write; above it, and without a
declared length, by sendfile (hybrid/pathsend.py). Each case runs on both sides of the threshold: the bytes,
the framing, keep-alive after it, and a file that is not the length the app declared (500, never a short body).
"""

from __future__ import annotations

import os
import time

import httpx
import pytest

from hybrid.pathsend_small import HELD_FILE, SMALL_FILE
from tests.support import Server, build_request
from tests.test_pathsend import _closed, _content, _header, _raw, _read_head, _read_responses
from tests.test_tls import base, client_context, pki, tls_args  # noqa: F401 (pki: a fixture)

pytestmark = pytest.mark.timeout(60)

APP = "tests.apps.files:app"
SIZES = (0, 1000, SMALL_FILE, SMALL_FILE + 1, 64 * 1024)  # up to SMALL_FILE (HELD_FILE when held) read whole


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("small")
    for size in SIZES:
        (d / f"f{size}").write_bytes(_content(size, size))
    (d / "subdir").mkdir()
    os.mkfifo(d / "fifo")
    return d


@pytest.fixture(scope="module")
def srv(files):
    with Server(APP, "--port", "0", "--async-path", "/pool/*", env={"FILES_DIR": str(files)}) as s:
        yield s


def _logged(srv, text: str, timeout: float = 5.0) -> str:
    """The server's output once ``text`` is in it, or after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while text not in srv.output and time.monotonic() < deadline:
        time.sleep(0.05)
    return srv.output


@pytest.mark.parametrize("prefix", ["", "/pool"])  # a worker's connection; a pool's (SocketStream)
def test_each_size_whole_and_keep_alive_after(srv, prefix):
    requests = b"".join(build_request("GET", f"{prefix}/raw/f{size}?cl={size}") + build_request("GET", "/text")
                        for size in SIZES)
    with _raw(srv) as sock:
        sock.sendall(requests)
        got = _read_responses(sock, 2 * len(SIZES))
    for size, (head, body), (text_head, text) in zip(SIZES, got[::2], got[1::2], strict=True):
        assert head.startswith(b"HTTP/1.1 200"), head
        assert head.lower().count(b"content-length") == 1 and _header(head, b"content-length") == b"%d" % size
        assert body == _content(size, size), f"{size} bytes: wrong body"
        assert text_head.startswith(b"HTTP/1.1 200") and text == b"text"


def test_starlette_and_head(srv):
    with httpx.Client(timeout=10) as client:
        for size in SIZES:
            r = client.get(f"{srv.url}/fr/f{size}")
            assert r.status_code == 200 and r.content == _content(size, size)
            assert r.headers["etag"]
    with _raw(srv) as sock:  # HEAD: the head only, with the length; then a GET on the same connection
        sock.sendall(build_request("HEAD", "/raw/f1000?cl=1000") + build_request("GET", "/text"))
        head, rest = _read_head(sock)
        assert head.startswith(b"HTTP/1.1 200") and _header(head, b"content-length") == b"1000"
        while not rest.endswith(b"\r\n\r\ntext"):
            chunk = sock.recv(65536)
            assert chunk, rest
            rest += chunk
        assert rest.startswith(b"HTTP/1.1 200"), "bytes after a HEAD's head: a body was sent"


@pytest.mark.parametrize("size", [1000, SMALL_FILE, SMALL_FILE + 1, 64 * 1024])
@pytest.mark.parametrize("change", [-1, -100, +1, +100])
def test_file_changed_after_the_app_took_its_size(srv, files, size, change):
    # The app stats the file, then it shrinks or grows before pathsend: a 500 before anything is written, and
    # the connection closes (never the old length's worth of other bytes, never a short body as a whole one).
    name = f"changes-{size}-{change}"
    (files / name).write_bytes(_content(size, 9))
    with _raw(srv) as sock:
        sock.sendall(build_request("GET", f"/stale/{name}?to={size + change}") + build_request("GET", "/text"))
        head, body = _read_head(sock)
        assert head.startswith(b"HTTP/1.1 500"), head
        assert _closed(sock)
    assert f"Content-Length '{size}' but '{files / name}' has {size + change} bytes" in _logged(srv, f"/{name}'")


@pytest.mark.parametrize(("target", "logged"), [
    ("/raw/subdir?cl=100", "subdir' is not a regular file"),  # a directory: its read fails
    ("/raw/fifo?cl=100", "fifo' is not a regular file"),  # a FIFO: neither open nor read may hang
    ("/raw/missing?cl=100", "missing': No such file or directory"),
    ("/raw/f0?cl=00", "Content-Length '00' but"),  # a length not written as the file's (read whole: 0 bytes)
    ("/raw/f1000?cl=01000", "Content-Length '01000' but"),  # (the same, longer: the sendfile path's check)
])
def test_errors_of_the_small_path_are_500(srv, target, logged):
    with _raw(srv) as sock:
        sock.sendall(build_request("GET", target))
        head, _body = _read_head(sock)
        assert head.startswith(b"HTTP/1.1 500"), head
        assert _closed(sock)
    assert logged in _logged(srv, logged)


def test_small_files_over_tls(files, pki):  # noqa: F811 (the fixture)
    with Server(APP, *tls_args(pki), env={"FILES_DIR": str(files)}) as srv:
        with httpx.Client(verify=client_context(pki), timeout=10) as client:
            for size in SIZES:  # (one connection: keep-alive after each)
                r = client.get(f"{base(srv)}/raw/f{size}?cl={size}")
                assert r.status_code == 200 and r.content == _content(size, size)
            name = "tls-changes"
            (files / name).write_bytes(_content(1000, 9))
            assert client.get(f"{base(srv)}/stale/{name}?to=999").status_code == 500


def test_tls_close_after_a_small_file_is_clean(files, pki):  # noqa: F811 (the fixture)
    # Connection: close after a small file: the response is complete, so the server ends TLS with close_notify
    # (a cut response would not): a client that refuses ragged EOFs reads the whole body and a clean end.
    with Server(APP, *tls_args(pki), env={"FILES_DIR": str(files)}) as srv:
        raw = _raw(srv)
        with client_context(pki).wrap_socket(raw, server_hostname="127.0.0.1", suppress_ragged_eofs=False) as sock:
            sock.sendall(build_request("GET", "/raw/f1000?cl=1000", headers=[("Connection", "close")]))
            data = b""
            while chunk := sock.recv(65536):  # (an end without close_notify raises SSLEOFError here)
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and body == _content(1000, 1000)


@pytest.mark.parametrize("size", [1000, SMALL_FILE + 1, HELD_FILE])
def test_a_small_file_is_held_to_the_end_of_its_step(files, size):
    # Read whole, a small file's response is the connection's last write of the request and is held as a body
    # is (hybrid/held_write.py); one that will be held is read whole up to HELD_FILE. /raw/...&then=0.6 blocks
    # 0.6 s in the step that sent it (no takeover at a 10 s threshold), so the file leaves after that, head and
    # body together, and keep-alive goes on.
    (files / f"held{size}").write_bytes(_content(size, size))
    with Server(APP, "--port", "0", "--blocking-threshold", "10", env={"FILES_DIR": str(files)}) as s:
        with _raw(s) as sock:
            sent = time.monotonic()
            sock.sendall(build_request("GET", f"/raw/held{size}?cl={size}&then=0.6"))
            ((head, body),) = _read_responses(sock, 1)
            waited = time.monotonic() - sent
            assert head.startswith(b"HTTP/1.1 200") and body == _content(size, size)
            assert waited >= 0.5, f"the file arrived {waited:.3f} s after the request: not held"
            sock.sendall(build_request("GET", "/text"))
            ((head, body),) = _read_responses(sock, 1)
            assert body == b"text"
