# The Transfer-Encoding an application set on its response, made into valid framing for h1.pyx (RFC 9112
# section 6.1): the server owns framing, so "chunked" is always the last coding and is applied by the server.
# Runs only when the app sets the header: never on the plain path.

from hybrid._speedups.h1_bytes cimport _is_token


cdef inline bytes _app_codings(list values):
    # The app's codings other than chunked, comma-joined in its order (b"" when it named chunked only), or None
    # when a value is not a list of coding names (parameters included: we cannot vouch for them).
    cdef list codings = []
    cdef bytes part
    for value in values:
        for part in (<bytes>value).split(b","):
            part = part.strip(b" \t")
            if not part:
                continue
            if not _is_token(part):
                return None
            if part.lower() != b"chunked":
                codings.append(part)
    return b", ".join(codings)
