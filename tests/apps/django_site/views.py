import asyncio
import json
import threading

from django.http import HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods


def index(request):
    return HttpResponse("django index", content_type="text/plain")


async def async_view(request):
    await asyncio.sleep(0.01)
    return JsonResponse({"async": True, "thread": threading.current_thread().name,
                         "q": request.GET.get("q"), "path": request.path})


def item(request, pk):
    return JsonResponse({"pk": pk, "method": request.method, "host": request.get_host()})


@csrf_exempt
@require_http_methods(["POST"])
def echo(request):
    data = json.loads(request.body)
    return JsonResponse({"echo": data, "length": len(request.body),
                         "content_type": request.content_type})


async def stream(request):
    n = int(request.GET.get("n", "5"))

    async def gen():
        for i in range(n):
            yield f"part {i}\n"
            await asyncio.sleep(0.01)

    return StreamingHttpResponse(gen(), content_type="text/plain")


def sync_stream(request):
    return StreamingHttpResponse((f"line {i}\n" for i in range(1000)), content_type="text/plain")


# How each wait/ view ended, by its id: "cancelled" when Django's listen_for_disconnect saw the client leave.
WAITED = {}


@csrf_exempt
async def wait(request):
    """Waits ?t= seconds, unless the client leaves first (tests/test_disconnect_watch.py)."""
    rid = request.GET["id"]
    WAITED[rid] = "waiting"
    try:
        await asyncio.sleep(float(request.GET.get("t", "0")))
    except asyncio.CancelledError:
        WAITED[rid] = "cancelled"
        raise
    WAITED[rid] = "finished"
    return HttpResponse(b"waited", content_type="text/plain")


async def waited(request):
    return JsonResponse(WAITED)


def boom(request):
    raise ValueError("django view boom (intentional)")
