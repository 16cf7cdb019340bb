"""The ASGI TLS extension (scope["extensions"]["tls"]) for https and wss scopes, and TLS close_notify when the
server closes a connection (issue 24). Real server processes, trustme certificates, real TLS clients (httpx,
websockets, ssl sockets) with a client certificate, on 127.0.0.1; every wait bounded."""

from __future__ import annotations

import asyncio
import json
import socket
import ssl

import httpx
import pytest
import trustme
import websockets

from tests.support import Server

pytestmark = pytest.mark.timeout(60)

APP = "tests.apps.extensions:app"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    d = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1")
    client_cert = ca.issue_cert("client@example.com")
    (d / "chain.pem").write_bytes(b"".join(p.bytes() for p in server_cert.cert_chain_pems))
    server_cert.private_key_pem.write_to_path(str(d / "key.pem"))
    ca.cert_pem.write_to_path(str(d / "ca.pem"))
    return {"ca": ca, "server": server_cert, "client": client_cert, "dir": d}


def tls_args(pki, *extra) -> list[str]:
    d = pki["dir"]
    return [APP, "--port", "0", "--ssl-certfile", str(d / "chain.pem"), "--ssl-keyfile", str(d / "key.pem"), *extra]


@pytest.fixture(scope="module")
def mtls(pki):
    """A server that requires a client certificate signed by the test CA."""
    with Server(*tls_args(pki, "--ssl-cert-reqs", "2", "--ssl-ca-certs", str(pki["dir"] / "ca.pem"))) as server:
        yield server


def client_context(pki, cert: bool = True) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    pki["ca"].configure_trust(ctx)
    if cert:
        pki["client"].configure_cert(ctx)
    return ctx


def pem(blob) -> str:
    return blob.bytes().decode("ascii").strip()


def test_tls_extension_with_a_client_certificate(pki, mtls):
    with httpx.Client(verify=client_context(pki), timeout=5) as client:
        tls = client.get(f"https://127.0.0.1:{mtls.port}/tls").json()
        # a stream served by the async pool builds its scope there: the same extension
        pooled = client.get(f"https://127.0.0.1:{mtls.port}/tls", headers={"accept": "text/event-stream"}).json()
    assert tls["server_cert"].strip() == pem(pki["server"].cert_chain_pems[0])  # the leaf, as PEM
    assert [c.strip() for c in tls["client_cert_chain"]] == [pem(pki["client"].cert_chain_pems[0])]
    # RFC 4514: the certificate's last RDN first; trustme names its certificates O=..., OU=...
    assert tls["client_cert_name"].startswith("OU=Testing cert #") and ",O=trustme" in tls["client_cert_name"]
    assert tls["client_cert_error"] is None
    assert tls["tls_version"] == 0x0304  # TLS 1.3, the protocol's own number
    assert tls["cipher_suite"] in (0x1301, 0x1302, 0x1303)  # the TLS 1.3 suites by IANA number
    assert pooled == tls


def test_tls_extension_is_fresh_per_scope(pki, mtls):
    # Worked out once per connection, copied into each scope (compiled since issue 22): an app that changes its
    # scope's copy, the chain list included, leaves the next request's on the same connection as it was.
    ctx = client_context(pki)
    with socket.create_connection(("127.0.0.1", mtls.port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall(b"GET /tls HTTP/1.1\r\nHost: x\r\n\r\nGET /tls-mutate HTTP/1.1\r\nHost: x\r\n\r\n"
                      b"GET /tls HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = _read_all(s)
    bodies = [part.split(b"\r\n\r\n", 1)[1] for part in data.split(b"HTTP/1.1 200")[1:]]
    assert len(bodies) == 3 and bodies[1] == b"changed"
    first, after = json.loads(bodies[0]), json.loads(bodies[2])
    assert first["client_cert_chain"] and first["client_cert_name"].startswith("OU=")
    assert after == first


def test_tls_extension_numbers_match_the_session(pki, mtls):
    ctx = client_context(pki)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with socket.create_connection(("127.0.0.1", mtls.port), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall(b"GET /tls HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = _read_all(s)
            cipher = s.cipher()[0]
    tls = json.loads(data.split(b"\r\n\r\n", 1)[1])
    assert tls["tls_version"] == 0x0303
    ids = {c["name"]: c["id"] & 0xFFFF for c in ctx.get_ciphers()}
    assert tls["cipher_suite"] == ids[cipher]


def test_tls_extension_without_a_client_certificate(pki):
    with Server(*tls_args(pki)) as server:
        with httpx.Client(verify=client_context(pki, cert=False), timeout=5) as client:
            resp = client.get(f"https://127.0.0.1:{server.port}/tls")
        tls = resp.json()
        assert "tls" in resp.headers["x-extensions"].split(",")
        assert tls["client_cert_chain"] == [] and tls["client_cert_name"] is None
        assert tls["server_cert"].strip() == pem(pki["server"].cert_chain_pems[0])
        # plain HTTP has no TLS extension
    with Server(APP, "--port", "0") as plain:
        resp = httpx.get(f"http://127.0.0.1:{plain.port}/tls", timeout=5)
        assert resp.json() is None and "tls" not in resp.headers["x-extensions"].split(",")


def test_tls_extension_in_a_wss_scope(pki, mtls):
    async def go():
        async with websockets.connect(f"wss://127.0.0.1:{mtls.port}/ws", ssl=client_context(pki),
                                      open_timeout=5) as ws:
            return json.loads(await asyncio.wait_for(ws.recv(), 5))

    got = asyncio.run(go())
    assert got["scheme"] == "wss"
    assert [c.strip() for c in got["tls"]["client_cert_chain"]] == [pem(pki["client"].cert_chain_pems[0])]
    assert got["tls"]["tls_version"] == 0x0304


# -- close_notify ------------------------------------------------------------------------------------------


def _read_all(s: ssl.SSLSocket) -> bytes:
    """Read to the end; with suppress_ragged_eofs=False an end without close_notify raises SSLEOFError."""
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk


def _request(pki, server, head: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as raw:
        with client_context(pki).wrap_socket(raw, server_hostname="127.0.0.1", suppress_ragged_eofs=False) as s:
            s.sendall(head)
            return _read_all(s)


@pytest.mark.parametrize("accept", ["text/plain", "text/event-stream"])  # closed by a worker, by the async pool
def test_close_notify_when_the_server_closes(pki, mtls, accept):
    data = _request(pki, mtls, b"GET /ext HTTP/1.1\r\nHost: x\r\nAccept: %s\r\nConnection: close\r\n\r\n"
                    % accept.encode())
    assert data.startswith(b"HTTP/1.1 200 ") and data.endswith(b"ok")  # and no SSLEOFError: a clean close


def test_no_close_notify_for_a_response_cut_short(pki, mtls):
    # HTTP/1.0: the body runs to the close. The app fails mid-body: a clean TLS close would pass the first part
    # off as the whole body; without close_notify the client sees the cut.
    with pytest.raises(ssl.SSLEOFError):
        _request(pki, mtls, b"GET /cut HTTP/1.0\r\n\r\n")
