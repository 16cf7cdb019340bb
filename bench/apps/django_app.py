"""The framework scenario through Django's ASGI handler: GET / answers plain text from an async view; POST /json
parses the 1 KB JSON body and answers JSON.

A whole Django project in one module: settings are configured here, before the ASGI application is built.
"""

import json

import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="bench-only",
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    MIDDLEWARE=[],
    INSTALLED_APPS=[],
    USE_TZ=True,
)
django.setup()

from django.core.asgi import get_asgi_application  # noqa: E402
from django.http import HttpResponse, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402


async def hello(request):
    return HttpResponse(b"Hello, world!", content_type="text/plain")


@csrf_exempt
async def post_json(request):
    doc = json.loads(request.body)
    return JsonResponse({"ok": True, "id": doc.get("id"), "items": len(doc.get("items", ()))})


urlpatterns = [path("", hello), path("json", post_json)]
app = get_asgi_application()
