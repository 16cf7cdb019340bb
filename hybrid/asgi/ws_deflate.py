"""permessage-deflate (RFC 7692) with inflation bounded by ``--ws-max-size``.

wsproto's PerMessageDeflate inflates whatever arrives: 64 KiB of compressed zeros (one read) becomes 64 MiB, so
a peer could make the server allocate far past ``--ws-max-size`` before the message's size is ever checked
(RFC 7692 section 8 warns of exactly this). Here each chunk inflates at most to what is left of the limit for the
current message; one byte more fails the connection with 1009 (message too big).
"""

from __future__ import annotations

import zlib

from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason


class BoundedDeflate(PerMessageDeflate):
    def __init__(self, max_size: int) -> None:
        super().__init__()
        self._max_size = max_size
        self._inflated = 0  # bytes of the current message inflated so far

    def frame_inbound_payload_data(self, proto, data):
        if not self._inbound_compressed or not self._inbound_is_compressible:
            return data
        try:
            out = self._decompressor.decompress(bytes(data), self._max_size - self._inflated + 1)
        except zlib.error:
            return CloseReason.INVALID_FRAME_PAYLOAD_DATA
        self._inflated += len(out)
        if self._inflated > self._max_size:
            return CloseReason.MESSAGE_TOO_BIG
        return out

    def frame_inbound_complete(self, proto, fin):
        result = super().frame_inbound_complete(proto, fin)
        if fin:
            self._inflated = 0
        return result
