"""hybrid/_speedups/h2fields.pyx against the h2 library's own checks it replaces (h2.utilities.validate_headers,
then normalize_inbound_headers: see h2_verdict for the one difference): the same verdict for every header
list drawn from names and values near the rules' edges, and when both accept, the same fields (cookies joined
last, :authority as Host when none came). Derandomized Hypothesis (tests/conftest.py): the same examples each run.
The servers' answers to malformed requests are in tests/test_h2_fields.py."""

from __future__ import annotations

import pytest
from h2.exceptions import ProtocolError
from h2.utilities import (
    HeaderValidationFlags,
    normalize_inbound_headers,
    normalize_outbound_headers,
    validate_headers,
    validate_outbound_headers,
)
from hpack import HeaderTuple, NeverIndexedHeaderTuple
from hybrid._speedups.h2fields import FieldError, check_trailers, request_fields, response_fields
from hypothesis import given
from hypothesis import strategies as st

NAMES = [b":method", b":path", b":scheme", b":authority", b":status", b":protocol", b":foo", b":", b"host", b"cookie",
         b"te", b"connection", b"upgrade", b"x-a", b"X-Up", b"", b"a b", b"a:b", b"x\x7f", b"x\xe9", b"x\x00"]
VALUES = [b"GET", b"CONNECT", b"/", b"", b"t", b"u", b"trailers", b"TRAILERS", b"gzip", b"websocket", b" v", b"v\t",
          b"a\x00b", b"a\rb", b"a\nb", b"in side", b"\xe9"]
REQUEST = [(b":method", b"GET"), (b":path", b"/"), (b":scheme", b"http"), (b":authority", b"t")]
FLAGS = HeaderValidationFlags(is_client=False, is_trailer=False, is_response_header=False, is_push_promise=False)
TRAILER_FLAGS = HeaderValidationFlags(is_client=False, is_trailer=True, is_response_header=False,
                                      is_push_promise=False)

field = st.tuples(st.sampled_from(NAMES), st.sampled_from(VALUES))
# Mostly a valid request with a few fields changed, inserted or dropped, so the later checks are reached too.
headers = st.one_of(
    st.lists(field, max_size=8),
    st.tuples(st.lists(field, max_size=3), st.integers(0, 4), st.integers(0, 4)).map(
        lambda t: REQUEST[:t[1]] + t[0] + REQUEST[t[2]:]),
    st.lists(field, max_size=4).map(lambda extra: REQUEST + extra),
)


def h2_verdict(block, flags=FLAGS):
    """h2's checks on the field lines as received, then its normalization (cookies joined, last). h2 itself
    joined cookies first, so it let through a cookie line before a pseudo-header or with a value ending in
    whitespace that another line's value then followed: RFC 9113 sections 8.2.1 and 8.3 forbid both per field
    line, and h2fields refuses them."""
    try:
        return list(normalize_inbound_headers(list(validate_headers(block, flags)), flags))
    except ProtocolError:
        return None


def check_request(block):
    expected = h2_verdict(block)
    try:
        method, path, authority, fields = request_fields(block)
    except FieldError:
        assert expected is None, f"h2 accepted what h2fields refused: {block!r}"
        return
    assert expected is not None, f"h2fields accepted what h2 refused: {block!r}"
    regular = [(n, v) for n, v in expected if n[:1] != b":"]
    if authority is not None and not any(n == b"host" for n, _ in regular):
        regular.insert(0, (b"host", authority))
    assert [tuple(f) for f in fields] == [tuple(f) for f in regular], block
    pseudo = {n: v for n, v in expected if n[:1] == b":"}
    assert (method, path, authority) == (pseudo.get(b":method"), pseudo.get(b":path"), pseudo.get(b":authority"))


@given(headers)
def test_request_fields_agree_with_h2(block):
    check_request(block)


def test_every_single_field_added_replaced_or_put_first_agrees_with_h2():
    """Each name x value as one more field of a valid request, in place of each of its pseudo-headers, and
    before them: every rule is met alone (the drawn lists above mostly break several at once)."""
    for name in NAMES:
        for value in VALUES:
            check_request([*REQUEST, (name, value)])
            check_request([(name, value), *REQUEST])
            for i in range(len(REQUEST)):
                check_request([*REQUEST[:i], (name, value), *REQUEST[i + 1:]])


@given(st.lists(field, max_size=6))
def test_check_trailers_agrees_with_h2(block):
    expected = h2_verdict(block, TRAILER_FLAGS)
    try:
        check_trailers(block)
    except FieldError:
        assert expected is None, f"h2 accepted trailers h2fields refused: {block!r}"
        return
    assert expected is not None, f"h2fields accepted trailers h2 refused: {block!r}"


@pytest.mark.parametrize("block", [REQUEST, [*REQUEST, (b"cookie", b"a=1"), (b"x-a", b"1"), (b"cookie", b"b=2")]])
def test_a_valid_request_passes_both(block):
    assert h2_verdict(block) is not None
    request_fields(block)


OUT_NAMES = [b"x-a", b"X-A", b" x-b ", b"te", b"TE", b"connection", b"Keep-Alive", b"authorization", b"cookie",
             b":status", b":path", b":x", b""]
OUT_VALUES = [b"v", b" v ", b"trailers", b"gzip", b"a=1", b"a-long-cookie-value-over-20", b"\tx"]
RESPONSE_FLAGS = HeaderValidationFlags(is_client=False, is_trailer=False, is_response_header=True,
                                       is_push_promise=False)


def h2_outbound(block):
    """h2's outbound normalization then validation of a response head (:status first, as the session sends)."""
    try:
        out = list(validate_outbound_headers(normalize_outbound_headers([(b":status", b"200"), *block],
                                                                        RESPONSE_FLAGS), RESPONSE_FLAGS))
    except (ProtocolError, IndexError):  # (h2 fails an empty name with an IndexError)
        return None
    return [(n, v, getattr(h, "indexable", True)) for h in out for n, v in [h]][1:]


def test_response_fields_agree_with_h2():
    """Every pair of an app's response fields: the same refusals, names, values, order and HPACK indexing."""
    pairs = [(n, v) for n in OUT_NAMES for v in OUT_VALUES]
    for first in pairs:
        for second in ((), *[(p,) for p in pairs[::7]]):
            block = [first, *second]
            expected = h2_outbound(block)
            try:
                got = [(h[0], h[1], getattr(h, "indexable", True)) for h in response_fields(block)]
            except ValueError:
                assert expected is None, f"h2 sent what h2fields refused: {block!r}"
                continue
            assert got == expected, block


def test_response_fields_strip_and_lower_as_bytes_methods():
    """A plain field is taken as it is (no ``.lower().strip()`` calls): each of the six bytes ``bytes.strip()``
    strips, at either end, and an upper-case letter anywhere in a name still send a field through them."""
    for ws in b" \t\n\r\x0b\x0c":
        for field in (bytes([ws]) + b"x-a", b"x-a" + bytes([ws]), b"X-a", b"x-A", b"xY-a", b"x-Z", b"x-a", b"x@[`{"):
            for kind in (bytes, bytearray):
                got = response_fields([(kind(field), kind(field))])
                assert got == [(field.lower().strip(), field.strip())], (field, kind)
    plain = (b"x-a", b"v")
    assert all(a is b for a, b in zip(response_fields([plain])[0], plain, strict=True))  # (no copy made)


def test_the_same_block_again_is_answered_as_it_was():
    """The HPACK decoder gives back the same header tuples for a repeated block: ``request_fields`` answers the
    very same objects as it answered them last (a new list of fields each time: a scope's headers are the app's
    to change), and anything else, a failing block included, is checked again."""
    block = [HeaderTuple(b":method", b"GET"), HeaderTuple(b":path", b"/a"), HeaderTuple(b":scheme", b"http"),
             HeaderTuple(b":authority", b"t"), HeaderTuple(b"cookie", b"a=1"), HeaderTuple(b"cookie", b"b=2")]
    seen = [None]  # (a connection's)
    first = request_fields(list(block), seen)
    again = request_fields(list(block), seen)
    assert again == first == (b"GET", b"/a", b"t", [(b"host", b"t"), (b"cookie", b"a=1; b=2")])
    assert again[3] is not first[3]
    again[3].append((b"x-app", b"changed"))
    assert request_fields(list(block), seen) == first
    other = [HeaderTuple(b":method", b"POST"), *block[1:]]  # (the same objects but one)
    assert request_fields(other, seen)[0] == b"POST"
    with pytest.raises(FieldError):
        request_fields(block[:3], seen)  # (fewer of the same objects: no Host, refused)
    bad = [*block[:4], HeaderTuple(b":method", b"GET")]
    for _ in range(2):
        with pytest.raises(FieldError):
            request_fields(bad, seen)


def test_the_same_response_headers_again_are_answered_as_they_were():
    """An app that sends the same fields again (a constant list, or a new list of equal bytes) gets the answer
    ``response_fields`` gave them last, in a new list; a field that can change in place (a bytearray) or a list
    item is normalized again every time, and so is a field that differs in one byte."""
    headers = [(b"Content-Type", b"text/plain "), (b"content-length", b"13"), (b"connection", b"close"),
               (b"authorization", b"x")]
    first = response_fields(headers)
    again = response_fields(headers)
    assert again == first == [(b"content-type", b"text/plain"), (b"content-length", b"13"), (b"authorization", b"x")]
    assert again is not first and type(again[2]) is NeverIndexedHeaderTuple
    again.append((b"x-app", b"changed"))
    assert response_fields(tuple(headers)) == first
    assert response_fields([(bytes(bytearray(n)), bytes(bytearray(v))) for n, v in headers]) == first  # (new objects)
    assert response_fields([*headers[:3], (b"authorization", b"y")])[2] == (b"authorization", b"y")
    assert response_fields([(b"Content-Type", b"text/plain"), *headers[1:]]) == first
    assert response_fields([(b"Content-Type", b"text/html "), *headers[1:]])[0] == (b"content-type", b"text/html")
    name = bytearray(b"X-One")
    changing = [(name, b"1"), *headers[:2]]
    assert response_fields(changing)[0] == (b"x-one", b"1")
    name[:] = b"X-Two"
    assert response_fields(changing)[0] == (b"x-two", b"1")
    listed = [[b"x-list", b"1"]]
    assert response_fields(listed) == [(b"x-list", b"1")]
    listed[0][1] = b"2"
    assert response_fields(listed) == [(b"x-list", b"2")]
