"""The compiled WebSocket unmasker follows RFC 6455 section 5.3 exactly, across calls that split a payload anywhere."""

from __future__ import annotations

import pytest
from hybrid._speedups.wsmask import XorMasker
from hypothesis import given
from hypothesis import strategies as st


def reference(key: bytes, data: bytes, offset: int) -> bytes:
    return bytes(b ^ key[(offset + i) % 4] for i, b in enumerate(data))


@given(key=st.binary(min_size=4, max_size=4), pieces=st.lists(st.binary(max_size=70), max_size=6))
def test_matches_the_rfc_definition_across_pieces(key, pieces):
    masker = XorMasker(key)
    offset = 0
    for piece in pieces:
        out = masker.process(piece)
        assert isinstance(out, bytearray)
        assert bytes(out) == reference(key, piece, offset)
        offset += len(piece)


def test_accepts_bytearray_and_rejects_a_bad_key():
    assert bytes(XorMasker(b"\x01\x02\x03\x04").process(bytearray(b"\x00" * 9))) == b"\x01\x02\x03\x04" * 2 + b"\x01"
    with pytest.raises(ValueError):
        XorMasker(b"abc")


def test_installed_in_wsproto():
    import wsproto.frame_protocol

    import hybrid.asgi.websocket  # noqa: F401 - installs it

    assert wsproto.frame_protocol.XorMaskerSimple is XorMasker
