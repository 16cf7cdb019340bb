"""--proxy-headers and --forwarded-allow-ips: client, scheme and host from a trusted proxy, ignored from others.

The wire tests use a second loopback address as an untrusted peer: Linux routes all of 127.0.0.0/8 to the
loopback interface, so a client bound to 127.0.0.2 is a different peer from the default-trusted 127.0.0.1.
The last tests put real nginx (Debian package, installed by .ci/system-deps) in front of hybrid, with TLS
on nginx's side, and check HTTP, an SSE stream and a WebSocket through it.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time

import httpx
import pytest
import trustme
import websockets

from hybrid.proxy_headers import ProxyTrust
from tests.support import Server, build_request

APP = "tests.apps.proxied:app"
OTHER_PEER = "127.0.0.2"


def _can_bind(addr: str) -> bool:
    try:
        with socket.socket() as s:
            s.bind((addr, 0))
        return True
    except OSError:
        return False


needs_second_loopback = pytest.mark.skipif(not _can_bind(OTHER_PEER), reason=f"cannot bind {OTHER_PEER}")


def seen(srv: Server, headers=(), source: str = "127.0.0.1") -> dict:
    """GET /scope from `source` with extra `headers`; the JSON the app answered."""
    with socket.create_connection(srv.addr, timeout=5, source_address=(source, 0)) as sock:
        sock.sendall(build_request("GET", "/scope", headers=[("Connection", "close"), *headers]))
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), data[:200]
    return json.loads(body)


# -- the rules, sans I/O --------------------------------------------------------------------------------------


def _scope(headers, kind="http", client=("127.0.0.1", 5000)):
    return {"type": kind, "scheme": "ws" if kind == "websocket" else "http", "client": client,
            "headers": [(n.encode(), v.encode()) for n, v in headers]}


def test_x_forwarded_for_takes_the_rightmost_untrusted_address():
    trust = ProxyTrust(["127.0.0.1", "10.0.0.0/8"])
    scope = _scope([("host", "app"), ("x-forwarded-for", "198.51.100.1, 203.0.113.5, 10.1.2.3")])
    trust.apply(scope)
    # 10.1.2.3 is a trusted proxy hop; 203.0.113.5 is the first address no trusted party vouches for beyond.
    assert scope["client"] == ("203.0.113.5", 0)


def test_forwarded_rfc7239_quoted_ipv6_with_port_proto_and_host():
    trust = ProxyTrust(["127.0.0.1"], forwarded=True)
    scope = _scope([("host", "internal:8000"),
                    ("forwarded", 'for="[2001:db8::17]:4711";proto=https;host=example.com')])
    trust.apply(scope)
    assert scope["client"] == ("2001:db8::17", 4711)
    assert scope["scheme"] == "https"
    assert dict(scope["headers"])[b"host"] == b"example.com"


HOSTILE = [("host", "shop.example"), ("forwarded", "for=6.6.6.6;proto=https;host=evil.example"),
           ("x-forwarded-host", "evil.example"), ("x-real-ip", "6.6.6.6")]


def test_by_default_only_x_forwarded_for_and_proto_are_read():
    """nginx passes a client's own Forwarded and X-Forwarded-Host through: by default neither is read."""
    scope = _scope([*HOSTILE, ("x-forwarded-for", "6.6.6.6, 198.51.100.2"), ("x-forwarded-proto", "http")])
    ProxyTrust(["127.0.0.1"]).apply(scope)
    assert scope["client"] == ("198.51.100.2", 0)
    assert scope["scheme"] == "http"
    assert dict(scope["headers"])[b"host"] == b"shop.example"


def test_proxy_forwarded_reads_forwarded_instead_of_x_forwarded():
    trust = ProxyTrust(["127.0.0.1"], forwarded=True)
    # The proxy appended the client's hop to what the client sent; X-Forwarded-* are the client's own words.
    scope = _scope([("host", "shop.example"), ("x-forwarded-for", "6.6.6.6"), ("x-forwarded-proto", "https"),
                    ("forwarded", "for=6.6.6.6;proto=https;host=evil.example, for=198.51.100.2;proto=http")])
    trust.apply(scope)
    assert scope["client"] == ("198.51.100.2", 0)
    assert scope["scheme"] == "http"
    assert dict(scope["headers"])[b"host"] == b"shop.example"
    scope = _scope([("forwarded", "for=unknown;proto=http"), ("x-forwarded-for", "192.0.2.9"),
                    ("x-forwarded-proto", "https")])
    trust.apply(scope)
    assert scope["client"] == ("127.0.0.1", 5000)  # RFC 7239 section 6: "unknown" names no address
    assert scope["scheme"] == "http"


def test_x_forwarded_host_only_with_proxy_forwarded_host():
    scope = _scope([("host", "internal:8000"), ("x-forwarded-host", "a.example, shop.example")])
    ProxyTrust(["127.0.0.1"], forwarded_host=True).apply(scope)
    assert dict(scope["headers"])[b"host"] == b"shop.example"  # the last one: the proxy's


def test_websocket_scheme_follows_the_proxy_protocol():
    scope = _scope([("x-forwarded-proto", "https")], kind="websocket")
    ProxyTrust(["*"]).apply(scope)
    assert scope["scheme"] == "wss"


def test_trust_is_per_peer_and_ipv4_mapped_addresses_count_as_ipv4():
    trust = ProxyTrust(["127.0.0.1", "10.0.0.0/8"])
    assert trust.for_peer(("127.0.0.1", 1)) is trust
    assert trust.for_peer(("::ffff:10.9.8.7", 1, 0, 0)) is trust
    assert trust.for_peer(("127.0.0.2", 1)) is None
    assert trust.for_peer("") is trust  # a unix socket peer
    with pytest.raises(ValueError, match="'10.0.0.0/33'"):
        ProxyTrust(["10.0.0.0/33"])


# -- over the wire ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def default_srv():
    with Server(APP, "--port", "0", "--no-access-log") as srv:
        yield srv


def test_trusted_peer_sets_client_and_scheme_but_not_host(default_srv):
    got = seen(default_srv, [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https"),
                             ("X-Forwarded-Host", "evil.example"), ("Forwarded", "for=6.6.6.6;proto=http")])
    assert got == {"client": ["203.0.113.7", 0], "scheme": "https", "host": "localhost"}


def test_proxy_forwarded_and_proxy_forwarded_host_options():
    with Server(APP, "--port", "0", "--no-access-log", "--proxy-forwarded") as srv:
        got = seen(srv, [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-Proto", "http"),
                         ("Forwarded", 'for="[2001:db8::17]:4711";proto=https;host=shop.example')])
    assert got == {"client": ["2001:db8::17", 4711], "scheme": "https", "host": "shop.example"}
    with Server(APP, "--port", "0", "--no-access-log", "--proxy-forwarded-host") as srv:
        got = seen(srv, [("X-Forwarded-Host", "shop.example"), ("Forwarded", "for=6.6.6.6")])
    assert got == {"client": ["127.0.0.1", got["client"][1]], "scheme": "http", "host": "shop.example"}


@needs_second_loopback
def test_untrusted_peer_cannot_spoof_its_address(default_srv):
    got = seen(default_srv, [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https"),
                             ("Forwarded", "for=192.0.2.1;proto=https"), ("X-Forwarded-Host", "evil")],
               source=OTHER_PEER)
    assert got["client"][0] == OTHER_PEER and got["scheme"] == "http" and got["host"] != "evil", got


@needs_second_loopback
def test_forwarded_allow_ips_takes_networks():
    with Server(APP, "--port", "0", "--no-access-log", "--forwarded-allow-ips", "127.0.0.0/30,10.0.0.1") as srv:
        got = seen(srv, [("X-Forwarded-For", "198.51.100.4")], source=OTHER_PEER)
    assert got["client"] == ["198.51.100.4", 0], got


def test_no_proxy_headers_ignores_them_even_from_loopback():
    with Server(APP, "--port", "0", "--no-access-log", "--no-proxy-headers") as srv:
        got = seen(srv, [("X-Forwarded-For", "203.0.113.7"), ("X-Forwarded-Proto", "https")])
    assert got["client"][0] == "127.0.0.1" and got["scheme"] == "http", got


def test_bad_forwarded_allow_ips_is_a_one_line_startup_error():
    proc = subprocess.run([*Server(APP).cmd, "--forwarded-allow-ips", "10.0.0.0/8,not-an-ip"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2, proc
    assert "--forwarded-allow-ips" in proc.stderr and "'not-an-ip'" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


# -- behind real nginx ----------------------------------------------------------------------------------------

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)

DEPLOYMENT_DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "deployment.md")

NGINX_WRAPPER = """
{user}
daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 128; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
{documented}
}}
"""


def documented_nginx_conf(**values) -> str:
    """The nginx config of docs/deployment.md ("Behind nginx"), line for line, with this test's ports and
    certificate, plus a plain-HTTP listener: the configuration users copy is the one under test."""
    with open(DEPLOYMENT_DOC) as f:
        doc = f.read()
    block = doc[doc.index("```nginx\n") + len("```nginx\n"):]
    block = block[:block.index("```")]
    for old, new in (("127.0.0.1:8000", "127.0.0.1:{upstream}"),
                     ("listen 443 ssl;", "listen 127.0.0.1:{port} ssl;\n    listen 127.0.0.1:{plain_port};"),
                     ("/etc/ssl/app.pem", "{cert}"), ("/etc/ssl/app.key", "{key}")):
        assert old in block, f"docs/deployment.md's nginx config no longer has {old!r}: update this test"
        block = block.replace(old, new.format(**values))
    return NGINX_WRAPPER.format(documented=block, **values)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def behind_nginx(tmp_path_factory):
    """(https base URL of nginx, client SSL context, plain-HTTP base URL); nginx proxies to hybrid with the
    configuration of docs/deployment.md, terminating TLS on the https one."""
    if NGINX is None:
        pytest.skip("nginx is not installed (.ci/system-deps installs it; it needs root or sudo)")
    if not _can_bind(OTHER_PEER):
        pytest.skip(f"cannot bind {OTHER_PEER}")
    tmp = tmp_path_factory.mktemp("nginx")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert.private_key_and_cert_chain_pem.write_to_path(str(tmp / "server.pem"))
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    with Server(APP, "--port", "0", "--no-access-log") as srv:
        port, plain_port = _free_port(), _free_port()
        conf = tmp / "nginx.conf"
        conf.write_text(documented_nginx_conf(
            user="user root;" if os.geteuid() == 0 else "", tmp=tmp, port=port, plain_port=plain_port,
            cert=tmp / "server.pem", key=tmp / "server.pem", upstream=srv.port))
        proc = subprocess.Popen([NGINX, "-c", str(conf), "-p", str(tmp)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, start_new_session=True)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        err = proc.stderr.read().decode() if proc.poll() is not None else "(still starting)"
                        pytest.fail(f"nginx did not start: {err} {(tmp / 'error.log').read_text()}")
                    time.sleep(0.05)
            yield f"https://127.0.0.1:{port}", client_ctx, f"http://127.0.0.1:{plain_port}"
        finally:
            os.killpg(proc.pid, signal.SIGTERM)  # nginx runs in its own session: its master and worker
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def _client(ctx) -> httpx.Client:
    return httpx.Client(verify=ctx, transport=httpx.HTTPTransport(verify=ctx, local_address=OTHER_PEER),
                        timeout=10)


def test_nginx_reports_client_address_scheme_and_host(behind_nginx):
    base, ctx, _ = behind_nginx
    with _client(ctx) as client:
        for _ in range(3):  # nginx reuses its upstream connection: every request is judged on its own headers
            r = client.get(base + "/scope", headers={"Host": "shop.example:8443"})
            assert r.status_code == 200
            assert r.json() == {"client": [OTHER_PEER, 0], "scheme": "https", "host": "shop.example:8443"}


# Every header a client could use to pass for someone else, somewhere else or over TLS. nginx forwards all of them
# that the documented config does not set or clear.
SPOOFED = [("Forwarded", 'for="[2001:db8::6]"'), ("Forwarded", "for=6.6.6.6;proto={proto};host=evil.example"),
           ("X-Forwarded-For", "6.6.6.6, 127.0.0.1"), ("X-Forwarded-Proto", "{proto}"),
           ("X-Forwarded-Host", "evil.example"), ("X-Forwarded-Port", "443"), ("X-Forwarded-Scheme", "{proto}"),
           ("X-Forwarded-Ssl", "on"), ("X-Real-IP", "6.6.6.6"), ("X-Client-IP", "6.6.6.6"),
           ("X-Original-Host", "evil.example"), ("Front-End-Https", "on")]


@pytest.mark.parametrize("tls", [True, False], ids=["https", "http"])
def test_client_proxy_headers_through_nginx_change_nothing(behind_nginx, tls):
    """A client's own proxy headers, sent through the documented nginx config, must not move its address, its
    scheme (each claims the other one) or its Host."""
    base, ctx, plain = behind_nginx
    scheme, claimed = ("https", "http") if tls else ("http", "https")
    headers = httpx.Headers([("Host", "shop.example")] + [(n, v.format(proto=claimed)) for n, v in SPOOFED])
    with _client(ctx) as client:
        for _ in range(2):  # (the second on nginx's reused upstream connection)
            r = client.get((base if tls else plain) + "/scope", headers=headers)
            assert r.status_code == 200
            assert r.json() == {"client": [OTHER_PEER, 0], "scheme": scheme, "host": "shop.example"}


def test_sse_through_nginx_arrives_event_by_event(behind_nginx):
    base, ctx, _ = behind_nginx
    n, gap = 4, 0.4
    arrivals = []
    with _client(ctx) as client, client.stream("GET", base + f"/sse?n={n}&gap={gap}",
                                               headers={"Accept": "text/event-stream"}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data: "):
                arrivals.append((time.time(), float(line[6:])))
    assert len(arrivals) == n
    # Each event reaches the client soon after the app sent it, not all together at the end of the stream.
    lags = [got - sent for got, sent in arrivals]
    assert max(lags) < gap, f"events held back by the proxy path: lags {lags}"
    assert arrivals[-1][0] - arrivals[0][0] > (n - 1) * gap * 0.8


def test_websocket_through_nginx(behind_nginx):
    base, ctx, _ = behind_nginx
    url = base.replace("https://", "wss://") + "/ws"

    async def talk():
        async with websockets.connect(url, ssl=ctx, local_addr=(OTHER_PEER, 0), open_timeout=10) as ws:
            first = json.loads(await asyncio.wait_for(ws.recv(), 10))
            replies = []
            for i in range(5):
                await ws.send(f"m{i}")
                replies.append(await asyncio.wait_for(ws.recv(), 10))
            return first, replies

    first, replies = asyncio.run(talk())
    assert first["client"][0] == OTHER_PEER and first["scheme"] == "wss", first
    assert replies == [f"m{i}" for i in range(5)]


@pytest.mark.parametrize("name, flagged", [
    ("X-Forwarded-For", True), ("Forwarded", True), ("X-Forwarded-Proto", True), ("X-Forwarded-Host", True),
    ("X-Forwarded", False), ("Transfer-Encoding", False), ("X-Real-IP", False),
])
def test_the_parser_flags_requests_that_carry_proxy_headers(name, flagged):
    """Only flagged requests pay for the proxy header scan (the hot path of a trusted loopback peer)."""
    from hybrid._speedups.h1 import Request, _create_h1_protocol

    value = "chunked" if name == "Transfer-Encoding" else "1.2.3.4"
    events = _create_h1_protocol().feed(build_request("GET", "/", headers=[(name, value)]))
    request = next(e for e in events if type(e) is Request)
    assert request.forwarded is flagged
