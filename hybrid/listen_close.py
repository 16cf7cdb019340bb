"""Closing a listening socket without resetting a client: between the last accept() and close(), a client whose
handshake completes is queued and then reset by the close (it believed itself connected). A socket filter that
drops every packet, attached before the last accepts, stops new handshakes at the listener (their SYNs are
dropped, and the client's retry is refused once the socket is closed) while the connections already queued are
accepted as usual: they are separate sockets, which the filter does not reach."""

from __future__ import annotations

import ctypes
import socket
import struct

SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)
_DROP_ALL = ctypes.create_string_buffer(struct.pack("HBBI", 0x06, 0, 0, 0))  # BPF_RET|BPF_K 0: drop the packet


def refuse_new_handshakes(sock: socket.socket) -> None:
    """Attach the drop-all filter (TCP listeners; a unix socket has no handshake in flight to lose)."""
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, struct.pack("HL", 1, ctypes.addressof(_DROP_ALL)))
    except OSError:  # (not Linux, or not allowed: the window stays a few microseconds wide)
        pass
