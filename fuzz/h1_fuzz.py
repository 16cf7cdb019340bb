"""Atheris (libFuzzer) harness for hybrid's HTTP/1.1 parser, ``H1Protocol`` (hybrid/_speedups/h1.pyx).

Each input is a byte stream a client could send, plus two control bytes: how to cut the stream into reads, and
which protocol options to use. The stream is fed to one H1Protocol in one piece and to another in pieces, and
these must hold (any other outcome is a crash that libFuzzer reports and saves):

- nothing but ``H1Error`` escapes ``feed()``; its status is one the server answers with, its reason a text;
- after an ``H1Error`` the protocol stays failed: every later ``feed()`` raises an H1Error with the same status
  and no events;
- events follow the grammar ``(Request Data* EndOfMessage)*`` with a possibly unfinished last request; a request's
  fields are what the server relies on (method a token, target non-empty without whitespace, path and query the
  parts of the target, header names lower-case tokens, values without CR, LF or NUL and without outer
  whitespace, HTTP version 1.0 or 1.1);
- nothing is parsed after a request that closes the connection, or after a WebSocket upgrade;
- the cut does not matter: the same requests, bodies and end (the same error status, or none) whether the stream
  came in one read or in many;
- each reported request can be answered: ``send_response`` / ``send_body`` frame a response without error.

Run it with ``make fuzz`` (see docs/fuzzing.md). Arguments are libFuzzer's (``-max_total_time=60``, a corpus
directory, ``-runs=N``, a crash file to replay). ``FUZZ_H1=path/to/h1.*.so`` loads another build of the module
(e.g. one compiled with coverage instrumentation by clang) instead of the installed one.
"""

from __future__ import annotations

import importlib.util
import os
import sys

import atheris


def _load_h1():
    path = os.environ.get("FUZZ_H1")
    if not path:
        from hybrid._speedups import h1

        return h1
    spec = importlib.util.spec_from_file_location("hybrid._speedups.h1", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["hybrid._speedups.h1"] = module
    spec.loader.exec_module(module)
    return module


# Set by _init() on the first input.
h1 = H1Error = Request = Data = EndOfMessage = None

STATUSES = {400, 413, 414, 431, 501, 505}
TCHAR = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


class Broken(AssertionError):
    pass


def check(cond, what, *detail):
    if not cond:
        raise Broken(what + (": " + " ".join(repr(d) for d in detail) if detail else ""))


def new_proto(options: int):
    return h1._create_h1_protocol(
        max_body_size=64 if options & 1 else None,
        websocket=bool(options & 2),
        max_incomplete_event_size=None if not options & 4 else 512,
        max_target_size=8192 if not options & 4 else 256,
        max_header_count=100 if not options & 4 else 8,
    )


def check_request(req):
    check(req.method and all(c in TCHAR for c in req.method), "method not a token", req.method)
    check(req.target and not any(c in b" \t\r\n\x00" for c in req.target), "bad target", req.target)
    check(req.http_version in ("1.0", "1.1"), "version", req.http_version)
    if req.query:
        check(req.target.endswith(b"?" + req.query), "query not the end of the target", req.target, req.query)
    check(req.path is not None and req.query is not None, "path/query missing")
    for name, value in req.headers:
        check(name and all(c in TCHAR for c in name) and name == name.lower(), "header name", name)
        check(not any(c in b"\r\n\x00" for c in value), "CR/LF/NUL in header value", name, value)
        check(value == value.strip(b" \t"), "header value not trimmed", name, value)
    if req.http_version == "1.1":
        check(sum(1 for n, _ in req.headers if n == b"host") == 1, "HTTP/1.1 request without exactly one Host")
    check(not (any(n == b"content-length" for n, _ in req.headers)
               and any(n == b"transfer-encoding" for n, _ in req.headers)), "both CL and TE accepted")


def run(options: int, stream: bytes, cuts: list[int]):
    """Feed ``stream`` cut at ``cuts``; return (normalised events, error status or None) and check invariants."""
    p = new_proto(options)
    events = []
    status = None
    prev = 0
    for cut in cuts + [len(stream)]:
        try:
            got = p.feed(stream[prev:cut])
        except H1Error as err:
            check(err.status_code in STATUSES, "status", err.status_code)
            check(isinstance(err.reason, str) and err.reason, "reason", err.reason)
            events.extend(err.events)
            status = err.status_code
            try:
                p.feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            except H1Error as again:
                check(again.status_code == status and again.events == [], "failed protocol recovered")
            else:
                check(False, "failed protocol parsed again")
            break
        events.extend(got)
        prev = cut
    out = []
    in_message = False
    closed = False
    for ev in events:
        kind = type(ev)
        if kind is Request:
            check(not in_message, "Request inside a message")
            check(not closed, "Request after a closing request or an upgrade")
            check_request(ev)
            in_message = True
            out.append(["req", ev.method, ev.target, ev.path, ev.query, [tuple(h) for h in ev.headers],
                        ev.http_version, bool(ev.keep_alive), ev.upgrade is not None, b""])
            if ev.upgrade is not None:
                closed = True
                check(options & 2, "upgrade without websocket=True")
            elif not ev.keep_alive:
                closed = True
        elif kind is Data:
            check(in_message, "Data outside a message")
            out[-1][-1] += ev.data
        elif kind is EndOfMessage:
            check(in_message, "EndOfMessage outside a message")
            out.append(["eom"])
            in_message = False
        else:
            check(False, "unknown event", ev)
    if status is None and any(r[0] == "req" and r[8] for r in out):
        check(p.feed(b"GET / HTTP/1.1\r\n") == [], "parsed after an upgrade")
    return p, out, status, events


def completed(out):
    """The entries of the requests that ended (up to the last EndOfMessage)."""
    for i in range(len(out) - 1, -1, -1):
        if out[i][0] == "eom":
            return out[:i + 1]
    return []


def answer(p, events):
    for ev in events:
        if type(ev) is Request:
            head = p.send_response(200, [(b"content-type", b"text/plain")], 2)
            check(head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\n\r\n"), "response head", head)
            body = p.send_body(b"ok", False)
            check(body in (b"ok", b""), "response body", body)


def TestOneInput(data: bytes):
    if h1 is None:
        _init()
    if len(data) < 2:
        return
    options, cut_seed = data[0], data[1]
    stream = data[2:]
    # cuts: a pseudo-random walk seeded by the second byte, so libFuzzer can vary it independently
    cuts = []
    if cut_seed and stream:
        x, pos = cut_seed, 0
        while True:
            x = (x * 1103515245 + 12345) & 0x7FFFFFFF
            pos += 1 + (x >> 8) % (1 + cut_seed % 64)
            if pos >= len(stream):
                break
            cuts.append(pos)
    whole_p, whole, whole_status, whole_events = run(options, stream, [])
    split_p, split, split_status, _ = run(options, stream, cuts)
    if whole_status != split_status:
        statuses = {whole_status, split_status}
        # Allowed: the 400-or-501 choice for an unknown method looks at the start of the failing read; limits
        # (413, 414, 431) are checked when httptools reports a field, URL or body piece, which it does at the end
        # of each read, so a limit may be seen before or after an invalid byte further on; and the bytes of a field
        # not yet reported are counted by whole reads, so one large read may reach 431 where smaller ones do not.
        allowed = (statuses == {400, 501}
                   or (None not in statuses and statuses & {413, 414, 431})
                   or (431 in statuses and len(stream) > (512 if options & 4 else 16384)))
        check(allowed, "status depends on the cut", whole_status, split_status, cuts)
    if whole_status is None and split_status is None:
        check(whole == split, "events depend on the cut", whole, split, cuts)
    else:
        # The requests completed before an error are the same; the one the error interrupted may have been
        # reported further in one of the two.
        done_whole, done_split = completed(whole), completed(split)
        n = min(len(done_whole), len(done_split))
        check(done_whole[:n] == done_split[:n], "requests before the error depend on the cut", whole, split, cuts)
        if whole_status == split_status:
            check(done_whole == done_split, "requests before the error depend on the cut", whole, split, cuts)
    if whole_status is None:
        answer(whole_p, whole_events)


def _init():
    """Load the parser. Called on the first input: a module built with coverage callbacks links against
    libFuzzer's runtime, which atheris loads only once fuzzing starts."""
    global h1, H1Error, Request, Data, EndOfMessage
    if os.environ.get("FUZZ_H1"):
        import ctypes

        for name in ("core_with_libfuzzer", "core_without_libfuzzer"):
            mod = sys.modules.get("atheris." + name)
            if mod is not None:  # (make its symbols visible to the modules loaded next)
                ctypes.CDLL(mod.__file__, mode=os.RTLD_GLOBAL | os.RTLD_NOLOAD)
    h1 = _load_h1()
    H1Error, Request, Data, EndOfMessage = h1.H1Error, h1.Request, h1.Data, h1.EndOfMessage


def main():
    atheris.Setup(sys.argv, TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
