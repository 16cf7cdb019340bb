"""What a TLS connection tells the app, and how it ends.

- ``tls_extension(conn)``: the ASGI TLS extension (``scope["extensions"]["tls"]``, asgi.readthedocs.io
  specs/tls.html) for an ``https`` or ``wss`` scope: the server's certificate, the client's certificate chain and
  its subject as an RFC 4514 string, the TLS version and the cipher suite as their IANA numbers. Worked out once
  per connection (the session does not change: renegotiation is off) and copied into each scope (HTTP/1.1
  scopes, the pool's too, copy it in compiled code after the first: ``_tls_scope``, hybrid/_speedups/cycle.pyx).
- ``send_close_notify(sock)``: the TLS ``close_notify`` alert before a socket closes (RFC 8446 section 6.1), so the
  client can tell a complete close from a cut (a "ragged EOF"). Never sent when a response is cut short: a
  close-delimited body must not look whole.
"""

from __future__ import annotations

import ssl
import weakref
from functools import lru_cache

# TLS versions as ASGI wants them: the protocol's own numbers (RFC 8446 section 4.1.2).
_VERSIONS = {"TLSv1": 0x0301, "TLSv1.1": 0x0302, "TLSv1.2": 0x0303, "TLSv1.3": 0x0304}

# RFC 4514 section 3: the short names a string representation uses; any other attribute goes by its OID.
_SHORT_NAMES = {
    "commonName": "CN", "localityName": "L", "stateOrProvinceName": "ST", "organizationName": "O",
    "organizationalUnitName": "OU", "countryName": "C", "streetAddress": "STREET", "domainComponent": "DC",
    "userId": "UID",
}
_OIDS = {  # the other attributes Python's ssl names in a subject, by their OIDs
    "emailAddress": "1.2.840.113549.1.9.1", "serialNumber": "2.5.4.5", "surname": "2.5.4.4",
    "givenName": "2.5.4.42", "title": "2.5.4.12", "businessCategory": "2.5.4.15", "postalCode": "2.5.4.17",
}



def tls_extension(conn) -> dict:
    """``scope["extensions"]["tls"]`` for a connection whose socket is an SSLSocket (a fresh dict per scope)."""
    sock = conn.sock
    # Kept on the SSLSocket itself: it outlives the connection object through handoffs to the pool and back, and
    # an attribute costs less per request than the WeakKeyDictionary lookup it replaces.
    info = sock.__dict__.get("_hybrid_tls_info")
    if info is None:
        info = sock._hybrid_tls_info = _describe(sock, conn.server.config.ssl_certfile)
    return {**info, "client_cert_chain": list(info["client_cert_chain"])}


def _describe(sock: ssl.SSLSocket, certfile: str | None) -> dict:
    chain: list[str] = []
    name = None
    der = sock.getpeercert(binary_form=True)  # (None unless --ssl-cert-reqs asked for a certificate)
    if der:
        verified = getattr(sock, "get_verified_chain", None)  # Python 3.13+: the whole chain, leaf first
        ders = list(verified()) if verified is not None else [der]
        chain = [ssl.DER_cert_to_PEM_cert(bytes(cert)) for cert in ders or [der]]
        name = rfc4514_name(sock.getpeercert().get("subject", ()))
    cipher = sock.cipher()
    return {
        "server_cert": _server_cert(certfile),
        "client_cert_chain": chain,
        "client_cert_name": name,
        # A certificate that fails verification fails the handshake (OpenSSL, with 1 or 2): no request then.
        "client_cert_error": None,
        "tls_version": _VERSIONS.get(sock.version()),
        "cipher_suite": _cipher_ids(sock.context).get(cipher[0]) if cipher else None,
    }


@lru_cache(maxsize=8)
def _server_cert(certfile: str | None) -> str | None:
    """The server's own certificate as PEM: the first certificate of --ssl-certfile (the leaf)."""
    if certfile is None:
        return None
    try:
        with open(certfile, encoding="ascii", errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    begin = text.find("-----BEGIN CERTIFICATE-----")
    end_marker = "-----END CERTIFICATE-----"
    end = text.find(end_marker, begin)
    if begin < 0 or end < 0:
        return None
    return text[begin:end + len(end_marker)] + "\n"


_cipher_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _cipher_ids(ctx: ssl.SSLContext) -> dict[str, int]:
    """OpenSSL cipher names to IANA cipher suite numbers (the low 16 bits of OpenSSL's id), per context."""
    ids = _cipher_cache.get(ctx)
    if ids is None:
        ids = _cipher_cache[ctx] = {c["name"]: c["id"] & 0xFFFF for c in ctx.get_ciphers()}
    return ids


def rfc4514_name(subject) -> str:
    """A subject as ``ssl.getpeercert()`` gives it (RDNs of (name, value) pairs, in certificate order) as an
    RFC 4514 string: the last RDN first, ',' between RDNs, '+' inside one."""
    rdns = []
    for rdn in reversed(subject):
        rdns.append("+".join(f"{_SHORT_NAMES.get(key) or _OIDS.get(key, key)}={_escape(value)}"
                             for key, value in rdn))
    return ",".join(rdns)


def _escape(value: str) -> str:
    # RFC 4514 section 2.4
    out = []
    for i, ch in enumerate(value):
        if ch in ',+"\\<>;' or (ch == "#" and i == 0) or (ch == " " and (i == 0 or i == len(value) - 1)):
            out.append("\\" + ch)
        elif ch == "\0":
            out.append("\\00")
        else:
            out.append(ch)
    return "".join(out)


def send_close_notify(sock) -> None:
    """Send our close_notify on a non-blocking SSLSocket that is about to close. Best effort: OpenSSL writes the
    alert and would then wait for the peer's, which we do not (RFC 8446 section 6.1 lets the initiator close
    without it); a full send buffer or a peer already gone just means no alert."""
    from hybrid._speedups.tls_io import close_notify

    if close_notify(sock):  # (one SSL_shutdown from compiled code, where tls_io.pyx can)
        return
    try:
        sock.unwrap()
    except (OSError, ValueError):  # SSLWantReadError (sent, the peer's not read: expected), reset, closed
        pass
