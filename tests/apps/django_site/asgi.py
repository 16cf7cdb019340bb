"""The Django project's ASGI entry point, as a user would write it: Django's ASGI handler (with static files
served by django.contrib.staticfiles' ASGIStaticFilesHandler) for HTTP, Channels for WebSockets."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.apps.django_site.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_app = get_asgi_application()  # (sets Django up before anything imports models or consumers)

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.urls import path  # noqa: E402

from .consumers import RoomConsumer, SyncEcho  # noqa: E402

application = ProtocolTypeRouter({
    "http": ASGIStaticFilesHandler(django_app),
    "websocket": URLRouter([
        path("ws/room/<str:room>/", RoomConsumer.as_asgi()),
        path("ws/echo/", SyncEcho.as_asgi()),
    ]),
})
