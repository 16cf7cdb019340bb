"""HTTP/2 (RFC 9113) over the ``h2`` library (sans-I/O, python-hyper): frames on the async pool's loop, each
stream's app on a worker thread (as an HTTP/1.1 request's; the pool's loop under --mode async).

- ``handoff.py``: how a connection reaches HTTP/2 (the h2c preface seen by a worker, ALPN ``h2`` after a TLS
  handshake) and the ``H2Handoff`` that carries it to the pool.
- ``session.py``: one connection's frames (``H2Session``): reading, writing, flow control, timeouts, defences,
  GOAWAY at shutdown.
- ``stream.py``: one stream's ASGI cycle (``H2Stream``): scope, ``receive``, ``send``.
- ``crossing.py``: what crosses between the pool's loop and the worker running a stream's app, in order.
- ``onworker.py``: a stream's app started on the worker that owns the connection's home set.
- ``guard.py``: the per-connection budgets that end floods (rapid reset, PING, SETTINGS).
"""

# RFC 9113 section 3.4: what a client with prior knowledge sends first.
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
