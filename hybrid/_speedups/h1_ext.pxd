# Bytes of the two ASGI response extensions that add to HTTP/1.1 framing, for h1.pyx: the 103 Early Hints
# interim response (RFC 8297, ASGI `http.response.early_hint`) and the trailer section that ends a chunked body
# (RFC 9112 section 7.1.2, ASGI `http.response.trailers`). Only run when an app sends those messages: never on
# the plain path.

from hybrid._speedups.h1_bytes cimport _has_forbidden_byte, _is_token

# (No module-level constants: a .pxd's assignments are not executed; these are literals inside the functions.)


cdef inline bint _not_in_trailers(bytes lowered):
    # Fields a recipient must know before the content, so never in trailers (RFC 9110 section 6.5.1): framing,
    # routing, request modifiers, authentication, response control data, how to process the content, and the
    # connection-specific fields (RFC 9110 section 7.6.1).
    return lowered in (
        b"transfer-encoding", b"content-length", b"host", b"trailer", b"te", b"connection", b"keep-alive",
        b"upgrade", b"proxy-connection", b"cache-control", b"expect", b"max-forwards", b"pragma", b"range",
        b"if-match", b"if-none-match", b"if-modified-since", b"if-unmodified-since", b"if-range",
        b"authorization", b"proxy-authorization", b"www-authenticate", b"proxy-authenticate", b"set-cookie",
        b"cookie", b"age", b"expires", b"date", b"location", b"retry-after", b"vary", b"warning",
        b"content-encoding", b"content-type", b"content-range",
    )


cdef inline bytes _field_line(object name, object value, str what):
    # one "name: value\r\n" line, checked as response header fields are (RFC 9110 section 5)
    if type(name) is not bytes or type(value) is not bytes:
        raise TypeError(f"ASGI: {what} names and values must be bytes, got {name!r}: {value!r}")
    if _has_forbidden_byte(name) or _has_forbidden_byte(value) or not _is_token(<bytes>name):
        raise ValueError(f"ASGI: invalid {what} {name!r}: {value!r}")
    return <bytes>name + b": " + <bytes>value + b"\r\n"


cdef inline bytes _early_hints(links):
    # "HTTP/1.1 103 Early Hints" with one Link field per link (ASGI gives the Link values, RFC 8288)
    cdef list out = [b"HTTP/1.1 103 Early Hints\r\n"]
    if isinstance(links, (bytes, str)):
        raise TypeError("ASGI: 'links' of 'http.response.early_hint' must be a list of bytes, not one value")
    for link in links:
        out.append(_field_line(b"link", link, "early hint field"))
    if len(out) == 1:
        return b""  # nothing to hint: no interim response at all
    out.append(b"\r\n")
    return b"".join(out)


cdef inline bytes _trailer_fields(fields):
    # The field lines of trailers, each checked as a header and refused where RFC 9110 section 6.5.1 says a
    # recipient cannot take it after the content.
    cdef list out = []
    for pair in fields:
        name, value = pair
        line = _field_line(name, value, "trailer field")
        if _not_in_trailers((<bytes>name).lower()):
            raise ValueError(f"ASGI: {(<bytes>name).decode('latin-1')!r} is not allowed in trailers "
                             f"(RFC 9110 section 6.5.1: the recipient needs it before the content)")
        out.append(line)
    return b"".join(out)
