"""Bench-only endpoints next to the real ones; never part of the production URLconf.

* ``GET /bench/ping``: a trivial authenticated DRF endpoint (the baseline of
  ``bench/enqueue.py`` and the light endpoint of ``bench/isolation.py``);
* ``POST /bench/ocr-inline``: OCR of a PDF inside the request, as an app without
  a job system does it (the "before" picture of ``bench/isolation.py``).
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.urls import path
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.urls import urlpatterns as conveyor_urlpatterns


class PingView(APIView):
    """Authenticated, no database query beyond the token lookup, no business logic."""

    def get(self, request: Request) -> Response:
        return Response({"ok": True, "user": request.user.pk})


class InlineOcrView(APIView):
    """Runs pdftoppm + tesseract on ``pages`` pages of a PDF under MEDIA_ROOT before answering.

    ``parallel`` pages at a time (default 2, as the pdf-processing queue runs them).
    """

    permission_classes = [IsAdminUser]

    def post(self, request: Request) -> Response:
        from bench.ocr import plain_loop

        media = Path(settings.MEDIA_ROOT).resolve()
        pdf = (media / str(request.data.get("path", ""))).resolve()
        if media not in pdf.parents or not pdf.is_file():
            raise ValidationError({"path": ["a PDF under MEDIA_ROOT"]})
        pages = int(request.data.get("pages", 1))
        parallel = int(request.data.get("parallel", 2))
        pages_per_minute, _ = plain_loop(pdf, pages, settings.OCR_DPI, parallel=parallel)
        return Response({"pages": pages, "pages_per_minute": round(pages_per_minute, 1)})


urlpatterns = [
    path("bench/ping", PingView.as_view()),
    path("bench/ocr-inline", InlineOcrView.as_view()),
    *conveyor_urlpatterns,
]
