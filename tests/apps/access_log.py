"""App for tests/test_access_log.py: plain answers, a handler that blocks its thread (forcing a takeover), a switch
that holds the access log's buffered lines back (so only a shutdown flush can write them), and a logging handler
a --log-config file can name."""

import logging
import os
import sys
import time
from urllib.parse import parse_qs

from tests.apps import plain_lifespan


class MarkingHandler(logging.Handler):
    """Writes ``HANDLER-SAW`` and the record's fields: proof that a record went through the logging module."""

    def emit(self, record):
        fields = record.args if isinstance(record.args, dict) else {}
        sys.stderr.write(f"HANDLER-SAW {record.name} {fields.get('path')} {fields.get('where')} "
                         f"{fields.get('request_id')}\n")
        sys.stderr.flush()


async def _plain(send, body: bytes) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await plain_lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/block":  # blocks its serving thread: the monitor hands its connections to another
        time.sleep(float(parse_qs(scope["query_string"].decode()).get("t", ["0.5"])[0]))
    elif path == "/hold-log":
        # From the flusher's next sleep on, buffered lines wait an hour; the server's own INFO lines (each of
        # which writes the buffered lines first) are silenced. Only a flush at shutdown can write what follows.
        import hybrid.logs

        hybrid.logs.FLUSH_DELAY = 3600
        logging.getLogger("hybrid.error").setLevel(logging.WARNING)
    elif path == "/pid":
        await _plain(send, str(os.getpid()).encode())
        return
    await _plain(send, b"ok")
