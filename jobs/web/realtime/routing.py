"""WebSocket URLs (mounted by ``config.asgi``)."""

from __future__ import annotations

from django.urls import path, re_path

from jobs.web.realtime.consumers import JobConsumer, JobStreamConsumer, UnknownPathConsumer

websocket_urlpatterns = [
    path("ws/jobs/<uuid:job_id>/", JobConsumer.as_asgi()),
    path("ws/jobs/", JobStreamConsumer.as_asgi()),
    re_path(r"", UnknownPathConsumer.as_asgi()),
]
