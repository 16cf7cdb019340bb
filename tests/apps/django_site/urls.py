from django.urls import path

from . import views

urlpatterns = [
    path("", views.index),
    path("async/", views.async_view),
    path("items/<int:pk>/", views.item),
    path("echo/", views.echo),
    path("stream/", views.stream),
    path("sync-stream/", views.sync_stream),
    path("boom/", views.boom),
    path("wait/", views.wait),
    path("waited/", views.waited),
]
