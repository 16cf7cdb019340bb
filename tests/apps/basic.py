"""A raw ASGI 3 application exercising the whole HTTP interface; routes are dispatched on scope["path"].

Module-level RESULTS records what the client cannot see in its own response (what receive() returned after
the response was sent, what send() raised); GET /results returns them as JSON.
"""

import asyncio
import contextvars
import gzip
import json
import os
import threading
import time
from urllib.parse import parse_qs

RESULTS: dict = {}
LIFESPAN = {"startup": 0, "shutdown": 0, "loops": []}
BG = {"done": 0}
_lock = threading.Lock()

request_var: contextvars.ContextVar = contextvars.ContextVar("request_var", default=None)


def _log_lifespan(event: str) -> None:
    path = os.environ.get("HYBRID_TEST_LIFESPAN_LOG")
    if path:
        with _lock, open(path, "a") as f:
            f.write(event + "\n")


def _jsonable(obj):
    if isinstance(obj, bytes):
        return {"__bytes__": obj.decode("latin-1")}
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, str | int | float | bool) or obj is None:
        return obj
    return repr(obj)


def _query(scope) -> dict:
    return {k: v[0] for k, v in parse_qs(scope["query_string"].decode("latin-1")).items()}


async def _read_body(receive) -> tuple[bytes, int, list]:
    chunks, events = [], 0
    flags = []
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            raise ConnectionError("client disconnected")
        assert msg["type"] == "http.request", msg
        events += 1
        chunks.append(msg.get("body", b""))
        flags.append(bool(msg.get("more_body", False)))
        if not msg.get("more_body", False):
            return b"".join(chunks), events, flags


async def _respond(send, status=200, body=b"", headers=None, content_type=b"text/plain; charset=utf-8"):
    hs = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if headers:
        hs.extend(headers)
    await send({"type": "http.response.start", "status": status, "headers": hs})
    await send({"type": "http.response.body", "body": body})


async def _json(send, obj, status=200):
    await _respond(send, status, json.dumps(_jsonable(obj)).encode(), content_type=b"application/json")


async def lifespan(scope, receive, send):
    while True:
        msg = await receive()
        if msg["type"] == "lifespan.startup":
            with _lock:
                LIFESPAN["startup"] += 1
                LIFESPAN["loops"].append(id(asyncio.get_running_loop()))
            _log_lifespan("startup")
            state = scope.get("state")
            if state is not None:
                state["started"] = True
                state["shared_list"] = []
                state["loop_id"] = id(asyncio.get_running_loop())
            await send({"type": "lifespan.startup.complete"})
        elif msg["type"] == "lifespan.shutdown":
            with _lock:
                LIFESPAN["shutdown"] += 1
            _log_lifespan("shutdown")
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        return await lifespan(scope, receive, send)
    assert scope["type"] == "http", scope["type"]
    path = scope["path"]
    root = scope.get("root_path", "")
    if root and path.startswith(root):  # ASGI lets path carry the root_path prefix
        path = path[len(root) :] or "/"
    q = _query(scope)

    if path == "/":
        return await _respond(send, body=b"hello, world")

    if path == "/echo":
        body, events, flags = await _read_body(receive)
        return await _respond(
            send,
            body=body,
            content_type=b"application/octet-stream",
            headers=[
                (b"x-chunks", str(events).encode()),
                (b"x-more-flags", "".join("1" if f else "0" for f in flags).encode()),
            ],
        )

    if path == "/scope" or path.startswith("/scope/"):
        await _read_body(receive)
        info = dict(scope)
        info["state"] = dict(scope["state"]) if "state" in scope else "<missing>"
        info["_types"] = {k: type(v).__name__ for k, v in scope.items()}
        info["_header_types"] = sorted({(type(n).__name__, type(v).__name__) for n, v in scope["headers"]})
        return await _json(send, info)

    if path == "/scope-mutate":  # an app may change its scope: the next request's must not see it
        for key in list(scope):
            scope[key] = "mutated"
        scope["added"] = "mutated"
        return await _respond(send, body=b"mutated")

    if path == "/nolength":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"nolength-body"})
        return

    if path == "/stream":
        n = int(q.get("n", "3"))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        for i in range(n):
            await send({"type": "http.response.body", "body": b"part-%d\n" % i, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        return

    if path.startswith("/status/"):
        code = int(path.rsplit("/", 1)[1])
        await send({"type": "http.response.start", "status": code, "headers": [(b"x-status", str(code).encode())]})
        await send({"type": "http.response.body", "body": b""})
        return

    if path == "/big":
        n = int(q.get("n", "1000000"))
        return await _respond(send, body=b"x" * n, content_type=b"application/octet-stream")

    if path == "/headers-out":
        await send(
            {
                "type": "http.response.start",
                "status": 201,
                "headers": [
                    (b"x-dup", b"one"),
                    (b"x-dup", b"two"),
                    (b"X-Mixed-Case", b"Value"),
                    (b"content-length", b"2"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b"ok"})
        return

    if path == "/app-close":
        body = b"closing"
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"connection", b"close"), (b"content-length", b"7")],
            }
        )
        await send({"type": "http.response.body", "body": body})
        return

    if path == "/short-body":  # declares 10 bytes, sends 5
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"10")]})
        await send({"type": "http.response.body", "body": b"12345"})
        return

    if path == "/app-chunked":  # the app declares chunked itself and sends raw pieces
        await send({"type": "http.response.start", "status": 200, "headers": [(b"transfer-encoding", b"chunked")]})
        await send({"type": "http.response.body", "body": b"abc", "more_body": True})
        await send({"type": "http.response.body", "body": b"defg", "more_body": False})
        return

    if path == "/app-te":  # the app sets Transfer-Encoding ?te=... and sends a gzip-coded body in two pieces
        coded = gzip.compress(b"hello, coded world " * 50)
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"transfer-encoding", q.get("te", "gzip").encode())]})
        await send({"type": "http.response.body", "body": coded[:40], "more_body": True})
        await send({"type": "http.response.body", "body": coded[40:], "more_body": False})
        return

    if path == "/error-before":
        raise RuntimeError("error-before-start (intentional)")

    if path == "/error-after":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"100")]})
        await send({"type": "http.response.body", "body": b"0123456789", "more_body": True})
        raise RuntimeError("error-after-start (intentional)")

    if path == "/error-after-chunked":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise RuntimeError("error-after-start chunked (intentional)")

    if path == "/no-response":
        return

    if path.startswith("/send-check/"):
        kind = path.rsplit("/", 1)[1]
        try:
            if kind == "body-before-start":
                await send({"type": "http.response.body", "body": b"too early"})
            elif kind == "second-start":
                await send({"type": "http.response.start", "status": 200, "headers": []})
                await send({"type": "http.response.start", "status": 200, "headers": []})
            elif kind == "str-body":
                await send({"type": "http.response.start", "status": 200, "headers": []})
                await send({"type": "http.response.body", "body": "not bytes"})
            elif kind == "bad-status":
                await send({"type": "http.response.start", "status": "200", "headers": []})
            elif kind == "status-out-of-range":
                await send({"type": "http.response.start", "status": 1000, "headers": []})
            elif kind == "header-injection":
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [(b"x-evil", b"a\r\nx-injected: 1"), (b"content-length", b"2")],
                    }
                )
                await send({"type": "http.response.body", "body": b"ok"})
            elif kind == "bad-header-name":
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [(b"bad name:", b"v"), (b"content-length", b"2")],
                    }
                )
                await send({"type": "http.response.body", "body": b"ok"})
            elif kind == "str-header":
                await send({"type": "http.response.start", "status": 200, "headers": [("x-str", "v")]})
                await send({"type": "http.response.body", "body": b"ok"})
            elif kind == "body-too-long":
                await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
                await send({"type": "http.response.body", "body": b"much longer than two bytes"})
            elif kind == "unknown-type":
                await send({"type": "http.response.bogus"})
            else:
                raise AssertionError(kind)
        except Exception as exc:  # record what send() raised, then let the server handle the failure
            RESULTS["send-check/" + kind] = {"raised": type(exc).__name__, "message": str(exc)}
            raise
        RESULTS["send-check/" + kind] = {"raised": None}
        await send({"type": "http.response.body", "body": b"send did not raise"})
        return

    if path == "/results":
        return await _json(send, RESULTS)

    if path == "/noread":
        return await _respond(send, body=b"no-read")

    if path == "/after-response":
        # read the body, finish the response, then call receive() once more: must be http.disconnect
        rid = q["id"]
        await _read_body(receive)
        await _respond(send, body=b"done")
        try:
            msg = await asyncio.wait_for(receive(), 3)
            RESULTS[rid] = msg["type"]
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            RESULTS[rid] = "error: " + type(exc).__name__
            raise
        return

    if path == "/track-disconnect":
        rid = q["id"]
        seen = RESULTS.setdefault(rid, [])
        while True:
            msg = await receive()
            seen.append(msg["type"])
            if msg["type"] == "http.disconnect":
                return
            if not msg.get("more_body", False):
                break
        return await _respond(send, body=b"complete")

    if path == "/sleep":
        time.sleep(float(q.get("t", "1")))
        return await _respond(send, body=b"slept")

    if path == "/asleep":
        await asyncio.sleep(float(q.get("t", "0.5")))
        return await _respond(send, body=b"aslept")

    if path == "/ctx":
        before = request_var.get()
        request_var.set(q.get("v", "set"))
        return await _json(send, {"before": before, "thread": threading.get_ident()})

    if path == "/asyncio":
        return await _json(send, await _asyncio_checks())

    if path == "/current-task":  # answered in the request's first step
        task = asyncio.current_task()
        return await _json(send, {"task": type(task).__name__, "done": task is not None and task.done()})

    if path == "/bg-start":

        async def bg():
            await asyncio.sleep(float(q.get("t", "0.2")))
            BG["done"] += 1

        RESULTS.setdefault("_bg_tasks", set()).add(asyncio.get_running_loop().create_task(bg()))
        return await _json(send, {"started": True})

    if path == "/bg-check":
        return await _json(send, {"done": BG["done"]})

    if path == "/state":
        state = scope.get("state")
        before = dict(state) if state is not None else None
        if state is not None:
            state["added_by_request"] = q.get("v", "x")
            if isinstance(state.get("shared_list"), list):
                state["shared_list"].append(1)
        return await _json(send, {"before": before, "loop_id": id(asyncio.get_running_loop())})

    if path == "/lifespan":
        return await _json(send, LIFESPAN)

    return await _respond(send, 404, b"not found")


async def _asyncio_checks() -> dict:
    out = {}
    loop = asyncio.get_running_loop()
    out["loop"] = loop is not None
    out["loop_running"] = loop.is_running()
    out["loop_thread"] = threading.get_ident()
    task = asyncio.current_task()
    out["current_task"] = task is not None
    # asyncio.timeout
    t0 = time.monotonic()
    try:
        async with asyncio.timeout(0.05):
            await asyncio.sleep(2)
        out["timeout"] = "no timeout"
    except TimeoutError:
        out["timeout"] = "TimeoutError"
    out["timeout_elapsed"] = time.monotonic() - t0
    # asyncio.wait_for
    t0 = time.monotonic()
    try:
        await asyncio.wait_for(asyncio.sleep(2), 0.05)
        out["wait_for"] = "no timeout"
    except TimeoutError:
        out["wait_for"] = "TimeoutError"
    out["wait_for_elapsed"] = time.monotonic() - t0
    # cancelling a child task
    child = asyncio.ensure_future(asyncio.sleep(5))
    await asyncio.sleep(0)
    child.cancel()
    try:
        await child
        out["cancel"] = "not cancelled"
    except asyncio.CancelledError:
        out["cancel"] = "CancelledError"
    # the request task itself can be cancelled and the cancellation caught (uncancel semantics)
    out["task_not_cancelled"] = task is not None and not task.cancelled()
    # gather / create_task run concurrently on the loop
    t0 = time.monotonic()
    await asyncio.gather(*(asyncio.sleep(0.05) for _ in range(5)))
    out["gather_elapsed"] = time.monotonic() - t0
    # run_in_executor works (anyio.to_thread relies on the loop's executor machinery)
    out["executor"] = await loop.run_in_executor(None, lambda: 42)
    # contextvars are copied into child tasks
    request_var.set("parent")

    async def child_reads():
        return request_var.get()

    out["child_ctx"] = await asyncio.create_task(child_reads())
    return out
