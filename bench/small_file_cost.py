"""CPU per file sent over loopback, the two ways hybrid/pathsend.py can send one (hybrid/pathsend_small.py's
threshold comes from this): ``read`` is open, pread, close and one send of head and body joined; ``sendfile``
is open, fstat, the head with MSG_MORE, sendfile, close. The reader drains in the same process, the same for
both, so the difference is the sender's. CPU time (user + system) of this process per file, min and median of
``--rounds`` interleaved rounds; only the difference between the two means anything.

    python -m bench.small_file_cost [--files 4000] [--rounds 5] [SIZE ...]
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
import time

HEAD = b"HTTP/1.1 200 OK\r\n" + b"x-header: value\r\n" * 10 + b"\r\n"  # (about a Starlette FileResponse's head)
FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK


def _read(sock: socket.socket, path: str, size: int) -> None:
    fd = os.open(path, FLAGS)
    data = os.pread(fd, size + 1, 0)
    os.close(fd)
    out = HEAD + data
    if sock.send(out) != len(out):
        raise RuntimeError("a partial send: the reader's buffer is too small")


def _sendfile(sock: socket.socket, path: str, size: int) -> None:
    fd = os.open(path, FLAGS)
    os.fstat(fd)
    sock.send(HEAD, socket.MSG_MORE)
    offset = 0
    while offset < size:
        offset += os.sendfile(sock.fileno(), fd, offset, size - offset)
    os.close(fd)


def _pair() -> tuple[socket.socket, socket.socket]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        client = socket.socket()
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        client.connect(listener.getsockname())
        server, _ = listener.accept()
    server.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return server, client


def _cost(send, path: str, size: int, files: int, buf: memoryview) -> float:
    server, client = _pair()
    with server, client:
        start = time.process_time()
        for _ in range(files):
            send(server, path, size)
            want = len(HEAD) + size
            while want:
                want -= client.recv_into(buf, want)
        return (time.process_time() - start) / files * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("sizes", nargs="*", type=int, default=[2048, 4096, 8192, 16384, 65536])
    args = parser.parse_args()
    buf = memoryview(bytearray(4 << 20))
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            path = os.path.join(tmp, f"f{size}")
            with open(path, "wb") as f:
                f.write(os.urandom(size))
            got: dict[str, list[float]] = {"read": [], "sendfile": []}
            for _ in range(args.rounds):
                for name, send in (("read", _read), ("sendfile", _sendfile)):
                    got[name].append(_cost(send, path, size, args.files, buf))
            print(f"{size:>8} B  " + "  ".join(
                f"{name} {min(v):.1f}/{sorted(v)[len(v) // 2]:.1f} µs" for name, v in got.items()), flush=True)


if __name__ == "__main__":
    main()
