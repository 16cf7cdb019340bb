"""Proxy headers: the client, scheme and host a trusted reverse proxy reports (``--proxy-headers``).

Behind nginx or a load balancer the TCP peer is the proxy, not the client. A proxy in ``--forwarded-allow-ips``
tells the truth in the headers it sets; from any other peer those headers are the client's own words and are
ignored.

Only the headers the operator says the proxy sets are read, because a proxy passes every other header through
untouched: nginx sets ``X-Forwarded-For`` and ``X-Forwarded-Proto`` (the documented config) and forwards a
client's own ``Forwarded`` and ``X-Forwarded-Host`` as they came. So by default hybrid reads ``X-Forwarded-For``
and ``X-Forwarded-Proto`` only (uvicorn's rule); ``--proxy-forwarded`` reads RFC 7239 ``Forwarded`` *instead*
(for, proto and host of the client's hop), for proxies that set that one; ``--proxy-forwarded-host`` also lets
``X-Forwarded-Host`` replace the Host header. ``X-Real-IP`` and the rest are never read.

Trust is decided once per connection (``ProxyTrust.for_peer``), so a connection from an untrusted peer pays
nothing per request, and a trusted one pays one pass over its header list.

Which address is the client: the proxy chain appends one address per hop, so the rightmost entries were written
by the proxies closest to us. Walking from the right, the first address that is not itself a trusted proxy is
the client; everything left of it was written by parties we do not trust and is skipped.

A unix socket peer is trusted: only a process allowed to open the socket file can connect, and that is how
nginx usually sits in front of a server on the same host.
"""

from __future__ import annotations

import ipaddress

_FORWARDED = b"forwarded"
_XFF = b"x-forwarded-for"
_XFP = b"x-forwarded-proto"
_XFH = b"x-forwarded-host"
_WS_SCHEME = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}


def parse_allow_ips(entries) -> tuple[bool, tuple]:
    """(trust everyone, networks) from IP addresses, CIDR networks and ``*``; ValueError names a bad entry."""
    networks = []
    for entry in entries:
        entry = entry.strip()
        if not entry:
            continue
        if entry == "*":
            return True, ()
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
        except ValueError:
            raise ValueError(f"{entry!r} is not an IP address, a CIDR network or '*'") from None
    return False, tuple(networks)


class ProxyTrust:
    """Which peers may speak for the client; ``for_peer`` is asked once per accepted connection."""

    def __init__(self, allow_ips, *, forwarded: bool = False, forwarded_host: bool = False) -> None:
        self.everyone, self.networks = parse_allow_ips(allow_ips)
        self.forwarded = forwarded  # --proxy-forwarded: read Forwarded instead of X-Forwarded-For / -Proto
        self.forwarded_host = forwarded_host  # --proxy-forwarded-host: read X-Forwarded-Host

    def trusts(self, host: str) -> bool:
        if self.everyone:
            return True
        try:
            ip = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if ip.version == 6 and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self.networks)

    def for_peer(self, client_addr) -> ProxyTrust | None:
        """Self when the peer is a trusted proxy (or a unix socket peer), else None."""
        if not client_addr:
            return self
        return self if self.trusts(client_addr[0]) else None

    # -- per request, for trusted peers only -------------------------------------------------------------

    def apply(self, scope: dict) -> None:
        """Rewrite ``client``, ``scheme`` and the Host header of a scope from the headers the proxy sets."""
        forwarded = xff = proto = host = None
        for name, value in scope["headers"]:
            if name == _FORWARDED:
                forwarded = value if forwarded is None else forwarded + b"," + value
            elif name == _XFF:
                xff = value if xff is None else xff + b"," + value
            elif name == _XFP:
                proto = value
            elif name == _XFH:
                host = value
        if not self.forwarded_host:
            host = None  # (nginx does not set it: a client's own X-Forwarded-Host would pass through)
        if self.forwarded:
            # The proxy sets Forwarded: X-Forwarded-For / -Proto are whatever the client sent.
            proto = None
            if forwarded is not None:
                hops = _parse_forwarded(forwarded.decode("latin-1"))
                chain = [h.get("for", "") for h in hops]
                index = self._client_index(chain)
                if index is not None:
                    # Only the client's hop counts: it was written by the first proxy we trust.
                    _set_client(scope, chain[index])
                    hop = hops[index]
                    proto = hop.get("proto", "").encode() or None
                    host = hop.get("host", "").encode() or host
        elif xff is not None:
            chain = [part.strip() for part in xff.decode("latin-1").split(",")]
            index = self._client_index(chain)
            if index is not None:
                _set_client(scope, chain[index])
        if proto is not None:
            scheme = proto.decode("latin-1").split(",")[-1].strip().lower()
            if scheme in _WS_SCHEME:
                scope["scheme"] = _WS_SCHEME[scheme] if scope["type"] == "websocket" else (
                    "https" if scheme in ("https", "wss") else "http"
                )
        if host is not None:
            value = host.split(b",")[-1].strip()
            if value and all(33 <= c < 127 for c in value):
                scope["headers"] = [(n, value if n == b"host" else v) for n, v in scope["headers"]]

    def _client_index(self, chain: list[str]) -> int | None:
        """Index of the rightmost address in ``chain`` that is not a trusted proxy (or the leftmost if all are)."""
        if not chain:
            return None
        for i in range(len(chain) - 1, -1, -1):
            if not self.trusts(_host_of(chain[i])):
                return i
        return 0


def _parse_forwarded(text: str) -> list[dict[str, str]]:
    """RFC 7239 section 4: comma-separated hops of semicolon-separated ``name=value`` pairs (values may be
    quoted strings). Pairs that do not parse are skipped rather than failing the request."""
    hops = []
    for element in _split_outside_quotes(text, ","):
        pairs = {}
        for pair in _split_outside_quotes(element, ";"):
            name, sep, value = pair.partition("=")
            if not sep:
                continue
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] == '"':
                value = value[1:-1].replace('\\"', '"')
            pairs[name.strip().lower()] = value
        hops.append(pairs)
    return hops


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    parts, current, quoted = [], [], False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == sep and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def _split_node(node: str) -> tuple[str, int]:
    """``192.0.2.1``, ``192.0.2.1:4711``, ``[2001:db8::1]:4711`` or ``2001:db8::1`` -> (host, port or 0)."""
    node = node.strip()
    if node.startswith("["):
        host, _, rest = node[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif node.count(":") == 1:
        host, _, port = node.partition(":")
    else:
        host, port = node, ""
    return host, int(port) if port.isdigit() and int(port) < 65536 else 0


def _host_of(node: str) -> str:
    return _split_node(node)[0]


def _set_client(scope: dict, node: str) -> None:
    host, port = _split_node(node)
    # RFC 7239 section 6: "unknown" and obfuscated identifiers ("_hidden") name no address; keep the peer.
    if host and host.lower() != "unknown" and not host.startswith("_"):
        scope["client"] = (host, port)
