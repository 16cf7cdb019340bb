"""WebSockets over HTTP/2 in the lifecycle events and metrics, as HTTP/1.1 ones are (tests/test_lifecycle.py):
``hybrid_websockets_open`` goes up when one starts and back to 0 however it ends; a collector sees one
WebSocketOpened and one WebSocketClosed per WebSocket. Frame-level h2 client (tests/test_h2_websocket.py) against a
real server process on 127.0.0.1; every wait is bounded."""

from __future__ import annotations

import json
import signal
import sys

import h2.errors
import h2.events
import pytest
from hyperframe.frame import DataFrame
from wsproto.events import CloseConnection, TextMessage

from tests.h2client import read_frames
from tests.support import REPO, Server, wait_until
from tests.test_h2_websocket import WS, h2_client
from tests.test_lifecycle import _free_port, _metrics

pytestmark = pytest.mark.timeout(60)

APP = "tests.apps.h2ws:app"

SCRIPT = """
import json, sys, threading
sys.path.insert(0, {repo!r})
import hybrid
from tests.apps.h2ws import app

lock = threading.Lock()

class Collector:
    def event(self, event):
        fields = {{k: getattr(event, k) for k in event.__slots__}}
        with lock, open({out!r}, "a") as f:
            f.write(json.dumps([type(event).__name__, fields]) + "\\n")

hybrid.run(app, port=0, lifecycle_collector=Collector())
"""


def _gauge(port: int) -> float:
    return _metrics(port)["hybrid_websockets_open"]


def _open(srv, client, port: int, path: str = "/echo") -> WS:
    ws = WS(client, path)
    ws.accepted()
    if path == "/echo":
        ws.send(TextMessage(data="hi"))
        assert ws.next_event() == TextMessage(data="hi")
    assert _gauge(port) == 1, "the WebSocket over HTTP/2 is counted while open"
    return ws


def _back_to_zero(port: int, how: str) -> None:
    wait_until(f"hybrid_websockets_open back to 0 after {how}", lambda: _gauge(port) == 0, timeout=5)


def test_websockets_open_gauge_up_and_down_for_each_ending():
    port = _free_port()
    with Server(APP, "--port", "0", "--metrics-port", str(port)) as srv:
        assert _gauge(port) == 0
        client = h2_client(srv)
        # close handshake
        ws = _open(srv, client, port)
        ws.send(CloseConnection(code=1000))
        assert isinstance(ws.next_event(), CloseConnection)
        assert isinstance(ws.ended(), h2.events.StreamEnded)
        _back_to_zero(port, "a close handshake")
        # the client's RST_STREAM
        ws = _open(srv, client, port)
        client.conn.reset_stream(ws.sid, h2.errors.ErrorCodes.CANCEL)
        client.flush()
        _back_to_zero(port, "RST_STREAM")
        # the app fails after its accept: 1011, the client answers the close
        ws = _open(srv, client, port, "/error-after")
        event = ws.next_event()
        assert isinstance(event, CloseConnection) and event.code == 1011, event
        ws.send_bytes(ws.ws.send(event.response()), end=True)
        _back_to_zero(port, "an app error (1011)")
        # the app fails before its accept: 500, counted from its start like an HTTP/1.1 handoff
        ws = WS(client, "/error")
        assert ws.response()[b":status"] == b"500"
        _back_to_zero(port, "an app error (500)")
        # two at once, then the connection is lost
        one = _open(srv, client, port)
        two = WS(client, "/echo")
        two.accepted()
        wait_until("two WebSockets counted", lambda: _gauge(port) == 2, timeout=5)
        assert one.sid != two.sid
        client.close()
        _back_to_zero(port, "the connection lost")
        # the HTTP/2 connection's own close is counted too (ConnectionClosed when the session ends)
        wait_until("hybrid_connections_open back to 0", lambda: _metrics(port)["hybrid_connections_open"] == 0,
                   timeout=5)
        m = _metrics(port)
    assert m["hybrid_websockets_open"] == 0 and m["hybrid_connections_closed_total"] == 1, m


def test_collector_sees_one_open_and_one_close_per_websocket_including_shutdown(tmp_path):
    out = tmp_path / "events.jsonl"
    script = tmp_path / "serve.py"
    script.write_text(SCRIPT.format(repo=str(REPO), out=str(out)))
    srv = Server()
    srv.__class__ = type("ScriptServer", (Server,), {"cmd": property(lambda self: [sys.executable, str(script)])})

    def events() -> list:
        return [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []

    with srv:
        client = h2_client(srv)
        closed = WS(client, "/echo", headers=[(b"x-request-id", b"ws-closed")])
        closed.accepted()
        closed.send_bytes(closed.ws.send(CloseConnection(code=1000)), end=True)
        assert isinstance(closed.next_event(), CloseConnection)
        assert isinstance(closed.ended(), h2.events.StreamEnded)
        ws = WS(client, "/echo", headers=[(b"x-request-id", b"ws-shutdown")])
        ws.accepted()
        ws.send(TextMessage(data="hi"))
        assert ws.next_event() == TextMessage(data="hi")
        srv.signal(signal.SIGTERM)  # closes 1001; the client answers on the stream (raw: see test_h2_websocket)
        frames, _ = read_frames(client.sock, 10, lambda f: isinstance(f, DataFrame) and f.stream_id == ws.sid)
        ws.ws.receive_data(frames[-1].data)
        event = next(ws.ws.events())
        assert isinstance(event, CloseConnection) and event.code == 1001
        client.send_raw(DataFrame(ws.sid, data=ws.ws.send(event.response()), flags=["END_STREAM"]).serialize())
        assert srv.wait(15) == 0, srv.output
    seen = [(name, f) for name, f in events() if name.startswith("WebSocket")]
    assert [(name, f["stream_id"]) for name, f in seen] == [
        ("WebSocketOpened", closed.sid), ("WebSocketClosed", closed.sid),
        ("WebSocketOpened", ws.sid), ("WebSocketClosed", ws.sid)], seen
    assert [f.get("request_id") for name, f in seen if name == "WebSocketOpened"] == ["ws-closed", "ws-shutdown"]
    opened = next(f for name, f in events() if name == "ConnectionOpened")
    assert {f["fd"] for _, f in seen} == {opened["fd"]}, "the HTTP/2 connection's fd"
    ends = [name for name, f in events() if f.get("fd") == opened["fd"] and name.endswith("Closed")]
    assert ends == ["WebSocketClosed", "WebSocketClosed", "ConnectionClosed"], ends  # the connection's end, once


def test_shutdown_closes_an_http2_connection_whose_stream_waits_for_end_stream(tmp_path):
    """The client answers the close handshake but never ends its side of the stream (the server waits
    --ws-close-timeout for that END_STREAM). SIGTERM: the connection is closed and reported before the loop stops,
    not destroyed with it."""
    out = tmp_path / "events.jsonl"
    script = tmp_path / "serve.py"
    script.write_text(SCRIPT.format(repo=str(REPO), out=str(out)))
    srv = Server()
    srv.__class__ = type("ScriptServer", (Server,), {"cmd": property(lambda self: [sys.executable, str(script)])})
    with srv:
        client = h2_client(srv)
        ws = WS(client, "/echo")
        ws.accepted()
        ws.send(CloseConnection(code=1000))  # (no END_STREAM)
        assert isinstance(ws.next_event(), CloseConnection)
        assert isinstance(ws.ended(), h2.events.StreamEnded)
        srv.signal(signal.SIGTERM)
        assert srv.wait(15) == 0, srv.output
    names = [name for name, _ in (json.loads(line) for line in out.read_text().splitlines())]
    assert names.count("WebSocketClosed") == 1 and names[-1] == "ConnectionClosed", names
    assert "Task was destroyed" not in srv.output and "Traceback" not in srv.output, srv.output
