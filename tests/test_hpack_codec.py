"""hybrid's compiled HPACK (hybrid/_speedups/hpack_codec.pyx) against the hpack library it replaces in h2.

Exact equivalence, both ways: the same encoded bytes for the same headers and table-size changes, and for any
byte string (valid blocks, mutated ones, garbage) the same decoded header tuples (class included: a
NeverIndexedHeaderTuple must stay one) or the same exception class, with the two decoders' tables still in step
afterwards. Hypothesis draws the same examples each run (tests/conftest.py).
"""

from __future__ import annotations

import random

import hpack
import pytest
from hpack import HeaderTuple, NeverIndexedHeaderTuple
from hypothesis import example, given
from hypothesis import strategies as st

from hybrid._speedups import hpack_codec

STATIC_NAMES = sorted({name for name, _ in hpack.table.HeaderTable.STATIC_TABLE})
COMMON = [b"", b"GET", b"/", b"200", b"gzip, deflate", b"text/plain", b"hybrid", b"Sun, 06 Dec 2026 12:23:01 GMT"]

names = st.one_of(st.sampled_from(STATIC_NAMES), st.sampled_from([b"x-a", b"x-b", b"cookie"]), st.binary(max_size=12))
values = st.one_of(st.sampled_from(COMMON), st.binary(max_size=40), st.binary(min_size=300, max_size=700))


@st.composite
def header(draw):
    name, value = draw(names), draw(values)
    kind = draw(st.sampled_from(["pair", "sensitive", "tuple", "never", "str"]))
    if kind == "sensitive":
        return (name, value, draw(st.booleans()))
    if kind == "tuple":
        return HeaderTuple(name, value)
    if kind == "never":
        return NeverIndexedHeaderTuple(name, value)
    if kind == "str":
        return (name.decode("latin-1"), value.decode("latin-1"))
    return (name, value)


# One 1000-octet field added to the table (literal name "a"), then 100 one-octet references to it (index 62).
BOMB = b"\x40\x01a" + bytes(hpack.hpack.encode_integer(1000, 7)) + b"b" * 1000 + b"\xbe" * 100

encode_ops = st.lists(st.one_of(
    st.tuples(st.just("resize"), st.sampled_from([0, 1, 64, 256, 4096, 8192, 65536])),
    st.tuples(st.just("encode"), st.lists(header(), max_size=12), st.booleans()),
), min_size=1, max_size=12)


def outcome(call, *args, **kwargs):
    try:
        result = call(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the exception's class is the outcome compared
        return ("raised", type(exc))
    if isinstance(result, list):
        return ("ok", [(type(h), tuple(h)) for h in result])
    return ("ok", result)


@given(encode_ops)
def test_encoder_matches_hpack(ops):
    ref, ours = hpack.Encoder(), hpack_codec.Encoder()
    ref_dec, our_dec = hpack.Decoder(), hpack_codec.Decoder()
    ref_dec.max_allowed_table_size = our_dec.max_allowed_table_size = 65536
    for op in ops:
        if op[0] == "resize":
            ref.header_table_size = ours.header_table_size = op[1]
            assert ours.header_table_size == ref.header_table_size
            continue
        _, headers, huffman = op
        expected = outcome(ref.encode, headers, huffman=huffman)
        assert outcome(ours.encode, headers, huffman=huffman) == expected
        if expected[0] == "ok":  # what we encode, both decoders read back alike
            block = expected[1]
            assert outcome(our_dec.decode, block, raw=True) == outcome(ref_dec.decode, block, raw=True)


def _mutate(block: bytes, data) -> bytes:
    how = data.draw(st.sampled_from(["keep", "truncate", "flip", "append"]))
    if not block or how == "keep":
        return block
    if how == "truncate":
        return block[:data.draw(st.integers(0, len(block) - 1))]
    if how == "flip":
        i = data.draw(st.integers(0, len(block) - 1))
        return block[:i] + bytes([block[i] ^ data.draw(st.integers(1, 255))]) + block[i + 1:]
    return block + data.draw(st.binary(min_size=1, max_size=8))


@given(st.data())
# RFC 7541 C.4.1: a request with Huffman-coded literals.
@example([("block", bytes.fromhex("828684418cf1e3c2e5f23a6ba0ab90f4ff"))])
# An HPACK bomb: one large entry, then many one-octet references to it (past max_header_list_size).
@example([("block", BOMB)])
# An integer of 7 octets (hpack's limit is 6), a size update after a field, index 0, an invalid Huffman string.
@example([("block", b"\xff\xff\xff\xff\xff\xff\x01"), ("block", b"\x82\x3f\xe1\x1f"), ("block", b"\x80"),
          ("block", b"\x40\x81\xff\x01a")])
def test_decoder_matches_hpack(data):
    if isinstance(data, list):  # (an explicit example: the steps themselves)
        steps, draw_mutation = data, None
    else:
        steps, draw_mutation = data.draw(st.lists(st.one_of(
            st.tuples(st.just("encoded"), st.lists(header(), max_size=10), st.booleans(), st.booleans()),
            st.tuples(st.just("block"), st.binary(max_size=64)),
            st.tuples(st.just("limits"), st.sampled_from([0, 100, 4096, 65536]),
                      st.sampled_from([0, 256, 4096, 8192])),
        ), min_size=1, max_size=10)), data
    encoder = hpack.Encoder()
    ref, ours = hpack.Decoder(), hpack_codec.Decoder()
    for step in steps:
        if step[0] == "limits":
            ref.max_header_list_size = ours.max_header_list_size = step[1] + 200
            ref.max_allowed_table_size = ours.max_allowed_table_size = step[2]
            continue
        raw = True
        if step[0] == "encoded":
            block = encoder.encode(step[1], huffman=step[2])
            raw = step[3]  # (False: UTF-8 decoding, and its error, too)
            if draw_mutation is not None:
                block = _mutate(block, draw_mutation)
        else:
            block = step[1]
        expected = outcome(ref.decode, block, raw=raw)
        assert outcome(ours.decode, block, raw=raw) == expected, block
        assert ours.header_table_size == ref.header_table_size


def test_decoder_bounds_header_list():
    """The HPACK bomb bound holds on its own (not only as "same as hpack"): 8 octets that would inflate to
    100 copies of a 1000-octet field stop at max_header_list_size."""
    decoder = hpack_codec.Decoder(max_header_list_size=65536)
    with pytest.raises(hpack.OversizedHeaderListError):
        decoder.decode(BOMB, raw=True)
    assert len(hpack_codec.Decoder().decode(BOMB[:-38], raw=True)) == 63  # (the same bomb, just under the bound)


def test_encoder_table_over_a_long_run():
    """The encoder's dynamic table over thousands of fields from a small pool (repeats, names with new values,
    entries evicted one by one and whole tables emptied, resizes): every block is hpack's, byte for byte."""
    rng = random.Random(26)
    pool = [b"content-type", b"x-a", b"x-b", b"date", b"server", b"set-cookie"]
    ref, ours = hpack.Encoder(), hpack_codec.Encoder()
    for i in range(3000):
        if i % 500 == 499:
            ref.header_table_size = ours.header_table_size = rng.choice([0, 128, 256, 4096])
        headers = [(rng.choice(pool), b"v%d" % rng.randrange(40) * rng.choice([1, 1, 1, 20, 200]))
                   for _ in range(rng.randrange(1, 6))]
        assert ours.encode(headers) == ref.encode(headers), i


def test_encoder_repeated_blocks_are_hpacks():
    """A connection's responses repeat their fields: the encoder gives back the block it kept when nothing in its
    table changed since, and that block must be what hpack encodes again (the same fields made never-indexed or
    not, as tuples or HeaderTuples, str or bytes, a field more or less, resizes between them)."""
    rng = random.Random(41)
    base = [(b":status", b"200"), (b"content-type", b"text/plain"), (b"content-length", b"13")]
    variants = [
        base,
        [*base, (b"date", b"Mon, 07 Dec 2026 06:00:00 GMT")],
        [*base, (b"date", b"Mon, 07 Dec 2026 06:00:01 GMT")],
        [*base, NeverIndexedHeaderTuple(b"authorization", b"secret")],
        [*base, (b"authorization", b"secret")],  # (equal to the one before as tuples; indexed, not never-indexed)
        [*base, HeaderTuple(b"authorization", b"secret")],
        [*base, ("authorization", "secret")],
        [*base, (b"x-s", b"1", True)],
        [*base, (b"x-s", b"1")],
        base[:2],
        [(b":status", b"200")],
        [(b":status", b"404"), (b"content-length", b"0")],
    ]
    ref, ours = hpack.Encoder(), hpack_codec.Encoder()
    repeats = 0
    for i in range(3000):
        if i % 400 == 399:
            ref.header_table_size = ours.header_table_size = rng.choice([0, 64, 256, 4096])
        headers = rng.choice(variants)
        last = None
        for _ in range(rng.choice([1, 2, 3])):
            block = ours.encode(list(headers))
            assert block == ref.encode(list(headers)), (i, headers)
            repeats += block is last  # (the kept block given back)
            last = block
    assert repeats > 1000  # (the kept block was given back, and checked, many times)


def test_decoder_repeated_blocks_are_hpacks():
    """A client's requests repeat their header blocks: the decoder gives back the fields it kept (in a new list)
    when the same bytes come with its table and bounds as they were; each result must be hpack's (a block
    naming dynamic entry 62 between blocks that add entries, resize the table or lower the bounds)."""
    rng = random.Random(62)
    encoder = hpack.Encoder()
    request = [(":method", "GET"), (":path", "/"), (":scheme", "http"), (":authority", "example.com")]
    blocks = [
        encoder.encode(request),  # (literals: the authority added)
        encoder.encode(request),  # (every field indexed now: repeatable)
        b"\xbe",  # dynamic entry 62, whichever entry is newest
        b"\x82\xbe",
        b"\x40\x01a\x01b",  # a literal added to the table: the entry 62 changes
        b"\x40\x01a\x01c",
        b"\x00\x01x\x01y",  # a literal not indexed: the table as it was
        b"\x3f\xe1\x1f",  # a table size update (4096)
        b"\x20",  # a table size update to 0: the table emptied
    ]
    ref, ours = hpack.Decoder(), hpack_codec.Decoder()
    given_back = 0
    for i in range(3000):
        block = rng.choice(blocks)
        last = None
        for _ in range(rng.choice([1, 2, 3])):
            change = rng.random()  # (between two decodes of the same block, now and then)
            if change < 0.03:
                ref.max_header_list_size = ours.max_header_list_size = rng.choice([40, 65536])
            elif change < 0.06:
                ref.max_allowed_table_size = ours.max_allowed_table_size = rng.choice([0, 4096])
            elif change < 0.09:
                ref.header_table_size = ours.header_table_size = rng.choice([0, 4096])
            try:
                fields = ours.decode(block, raw=True)
                got = ("ok", [(type(h), tuple(h)) for h in fields])
            except Exception as exc:  # noqa: BLE001 - the exception's class is the outcome compared
                fields, got = None, ("raised", type(exc))
            assert got == outcome(ref.decode, block, raw=True), (i, block)
            if fields and last:
                given_back += fields is not last and fields[0] is last[0]  # (kept fields, a new list)
            last = fields
    assert given_back > 300
    # The bound is the decode's own, not the kept block's: the same block, under a lower bound now, is refused.
    ref, ours = hpack.Decoder(), hpack_codec.Decoder()
    assert outcome(ours.decode, b"\x82", raw=True) == outcome(ref.decode, b"\x82", raw=True)
    ref.max_header_list_size = ours.max_header_list_size = 10
    assert outcome(ours.decode, b"\x82", raw=True) == outcome(ref.decode, b"\x82", raw=True) == (
        "raised", hpack.OversizedHeaderListError)
