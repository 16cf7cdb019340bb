"""The filter that stops new handshakes at shutdown (hybrid/listen_close.py), on real loopback sockets: new SYNs
are dropped, and a handshake already under way when it is attached still completes, so its client is accepted
and answered rather than stranded half-open and reset when the listener closes (a SIGTERM under a stream of new
connections lost one request in ~2,000 that way with a filter that dropped every packet)."""

import ctypes
import socket
import struct

import pytest

from hybrid.listen_close import SO_ATTACH_FILTER, refuse_new_handshakes

# A filter that holds a handshake half-done: it drops every segment with ACK set, so the client's SYN gets its
# SYN-ACK (the client is connected) while the client's last ACK and its request never reach the listener.
_DROP_ACK = ctypes.create_string_buffer(
    struct.pack("HBBI", 0x30, 0, 0, 13) + struct.pack("HBBI", 0x45, 0, 1, 0x10)
    + struct.pack("HBBI", 0x06, 0, 0, 0) + struct.pack("HBBI", 0x06, 0, 0, 0xFFFFFFFF))


@pytest.mark.parametrize(("family", "host"), [(socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")])
def test_a_handshake_under_way_completes_and_new_ones_are_refused(family, host):
    with socket.socket(family) as listener:
        listener.bind((host, 0))
        listener.listen(16)
        addr = listener.getsockname()[:2]
        listener.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, struct.pack("HL", 4, ctypes.addressof(_DROP_ACK)))
        under_way = socket.create_connection(addr, timeout=2)  # (connected on the client's side only)
        under_way.sendall(b"GET / HTTP/1.1\r\n\r\n")
        listener.settimeout(0.3)
        with pytest.raises(TimeoutError):
            listener.accept()  # (the premise: that handshake is not complete on the server's side)

        assert refuse_new_handshakes(listener)

        # The client's retransmission (200 ms on) now reaches the listener: the connection is accepted whole.
        listener.settimeout(5)
        conn, _ = listener.accept()
        with conn, under_way:
            conn.settimeout(5)
            assert conn.recv(100) == b"GET / HTTP/1.1\r\n\r\n"
            conn.sendall(b"HTTP/1.1 204 No Content\r\n\r\n")
            assert under_way.recv(100) == b"HTTP/1.1 204 No Content\r\n\r\n"
        # A new client's SYN is dropped: its connect() does not complete while the filter is on.
        with socket.socket(family) as late:
            late.settimeout(0.5)
            with pytest.raises(TimeoutError):
                late.connect(addr)
