"""What a WebSocket echo message costs a REAL server process: over HTTP/1.1 (an upgrade) or HTTP/2 (RFC 8441).

One WebSocket, one 16-byte text message in flight at a time, echoed by ``tests.apps.ws:app``. As in
``bench.process_cost`` (whose server start and counters this uses): ``--strace`` attaches ``strace -c -f`` to
every thread for N messages (system calls per message, each kind); ``--callgrind`` runs the server under
callgrind and takes (I(2N) - I(N)) / N, instructions per message.

    .venv/bin/python -m bench.ws_cost --proto h2|h1 [--messages 2000] (--strace | --callgrind)
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import signal
import socket
import subprocess
import tempfile
import time

import h2.config
import h2.connection
import h2.events
from wsproto import ConnectionType, WSConnection
from wsproto.connection import Connection
from wsproto.events import AcceptConnection, Request, TextMessage

from bench import env
from bench.process_cost import START_TIMEOUT, callgrind_totals, server_argv, stop, wait_listening

APP = "tests.apps.ws:app"
MESSAGE = "0123456789abcdef"


class H1Client:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.ws = WSConnection(ConnectionType.CLIENT)
        self.sock.sendall(self.ws.send(Request(host="127.0.0.1", target="/")))
        self._until(AcceptConnection)

    def _until(self, kind):
        while True:
            for event in self.ws.events():
                if isinstance(event, kind):
                    return event
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the server closed the connection")
            self.ws.receive_data(data)

    def echo(self) -> None:
        self.sock.sendall(self.ws.send(TextMessage(data=MESSAGE)))
        assert self._until(TextMessage).data == MESSAGE


class H2Client:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding=None))
        self.conn.initiate_connection()
        self.sock.sendall(self.conn.data_to_send())
        self._until(lambda e: isinstance(e, h2.events.RemoteSettingsChanged))
        self.sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(self.sid, [(b":method", b"CONNECT"), (b":protocol", b"websocket"),
                                          (b":scheme", b"http"), (b":path", b"/"), (b":authority", b"127.0.0.1"),
                                          (b"sec-websocket-version", b"13")])
        self.sock.sendall(self.conn.data_to_send())
        self.ws = Connection(ConnectionType.CLIENT)
        self._until(lambda e: isinstance(e, h2.events.ResponseReceived))

    def _until(self, match):
        while True:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the server closed the connection")
            events = self.conn.receive_data(data)
            found = None
            for event in events:
                if isinstance(event, h2.events.DataReceived):
                    self.conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
                    self.ws.receive_data(event.data)
                if found is None and match(event):
                    found = event
            data = self.conn.data_to_send()
            if data:
                self.sock.sendall(data)
            if found is not None:
                return found

    def echo(self) -> None:
        self.conn.send_data(self.sid, self.ws.send(TextMessage(data=MESSAGE)))
        self.sock.sendall(self.conn.data_to_send())
        while True:
            for event in self.ws.events():
                if isinstance(event, TextMessage):
                    assert event.data == MESSAGE
                    return
            self._until(lambda e: isinstance(e, h2.events.DataReceived))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--proto", choices=("h1", "h2"), required=True)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=500)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--callgrind", action="store_true")
    mode.add_argument("--strace", action="store_true")
    args = parser.parse_args()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # (No keepalive pings: under valgrind a run outlasts --ws-ping-interval, and the clients answer none.)
    extra = ["--ws-ping-interval", "0", *(["--blocking-threshold", "30"] if args.callgrind else [])]
    argv = server_argv("hybrid", APP, port, extra)
    out = tempfile.mkdtemp(prefix="ws_cost.")
    if args.callgrind:
        argv = ["valgrind", "--tool=callgrind", "--separate-threads=no", f"--callgrind-out-file={out}/cg.%p", *argv]
    log = open(os.path.join(out, "server.log"), "w")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(argv, cwd=env.REPO_ROOT, stdout=log, stderr=log,
                            env={**os.environ, "PYTHONHASHSEED": "0"})
    n = args.messages
    try:
        wait_listening(proc, port, START_TIMEOUT)
        client = (H2Client if args.proto == "h2" else H1Client)(port)
        for _ in range(args.warmup):
            client.echo()
        if args.callgrind:
            subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True, capture_output=True)
            for count in (n, 2 * n):  # (each dump counts from the one before: I(N), then I(2N))
                for _ in range(count):
                    client.echo()
                subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True)
        else:
            tracer = subprocess.Popen(["strace", "-c", "-f", f"-p{proc.pid}", "-o", f"{out}/strace"],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)  # (attached to every thread)
            for _ in range(n):
                client.echo()
            tracer.send_signal(signal.SIGINT)
            tracer.wait(30)
    finally:
        stop(proc)
    if args.callgrind:
        first, second = sorted(glob.glob(f"{out}/cg.{proc.pid}.*"))[:2]
        one, two = callgrind_totals(first), callgrind_totals(second)
        print(json.dumps({"proto": args.proto, "instructions_per_message": round((two - one) / n)}))
        return
    calls = {}
    with open(f"{out}/strace") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
                calls[parts[-1]] = int(parts[3])
    print(json.dumps({"proto": args.proto, "syscalls_per_message": round(sum(calls.values()) / n, 3),
                      "each": {k: round(v / n, 3) for k, v in sorted(calls.items(), key=lambda kv: -kv[1])}}))


if __name__ == "__main__":
    main()
