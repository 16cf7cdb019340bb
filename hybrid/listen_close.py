"""Closing a listening socket without resetting a client: between the last accept() and close(), a client whose
handshake completes is queued and then reset by the close (it believed itself connected). A socket filter that
drops every SYN, attached before the last accepts, stops new handshakes at the listener (the SYNs are dropped, and
the client's retry is refused once the socket is closed) while the connections already queued are accepted as
usual: they are separate sockets, which the filter does not reach.

Only SYNs: a handshake whose SYN got in before the filter still needs its last ACK to reach the listener. A filter
that dropped every packet stranded it half-open (the client, connected, sent its request; the server never had
the connection) until the listener closed and the client's retransmission 200 ms later was reset: one request in
~2,000 lost at a SIGTERM under a stream of new connections. The caller gives those ACKs a moment
(``HANDSHAKE_SETTLE``) before its last accepts.
"""

from __future__ import annotations

import ctypes
import socket
import struct

SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)
# Classic BPF over the TCP header (a TCP socket's filter sees the segment from its TCP header on): load the flags
# byte (offset 13); SYN set: return 0 (drop); otherwise return all of it (keep).
_DROP_SYN = ctypes.create_string_buffer(
    struct.pack("HBBI", 0x30, 0, 0, 13)             # BPF_LD|BPF_B|BPF_ABS [13]
    + struct.pack("HBBI", 0x45, 0, 1, 0x02)         # BPF_JMP|BPF_JSET|BPF_K #SYN: next, else skip one
    + struct.pack("HBBI", 0x06, 0, 0, 0)            # BPF_RET|BPF_K 0: drop
    + struct.pack("HBBI", 0x06, 0, 0, 0xFFFFFFFF))  # BPF_RET|BPF_K: keep
_DROP_SYN_LEN = 4
# How long the last ACKs of handshakes already under way get to reach the listener (loopback and LAN: microseconds)
HANDSHAKE_SETTLE = 0.01


def refuse_new_handshakes(sock: socket.socket) -> bool:
    """Attach the SYN-dropping filter (TCP listeners; a unix socket has no handshake in flight to lose). True
    when attached: the caller then waits ``HANDSHAKE_SETTLE`` before its last accepts."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return False
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER,
                        struct.pack("HL", _DROP_SYN_LEN, ctypes.addressof(_DROP_SYN)))
    except OSError:  # (not Linux, or not allowed: the window stays a few microseconds wide)
        return False
    return True
