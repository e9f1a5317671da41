"""Every API error as JSON that names the field and the problem; never an HTML page."""

from __future__ import annotations

import logging
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.views import exception_handler

from jobs.dispatch.backpressure import Backpressure

logger = logging.getLogger(__name__)


def json_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, Backpressure):
        # 429 (the owner's own backlog) or 503 (the queue's), with when to come back and the limit's name.
        return Response(exc.body(), status=exc.status_code, headers={"Retry-After": str(exc.retry_after_s)})
    response = exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        errors = response.data if isinstance(response.data, dict) else {"non_field_errors": response.data}
        fields = ", ".join(str(name) for name in errors)
        response.data = {"detail": f"invalid input: {fields}", "errors": errors}
    elif isinstance(response.data, dict) and "detail" not in response.data:
        # A refusal that names fields (a 403 on `priority`): the shape of a validation error, so
        # the detail reads as a sentence instead of the repr of DRF's error dict.
        fields = ", ".join(str(name) for name in response.data)
        refusal = str(getattr(exc, "default_detail", "refused")).rstrip(".")
        response.data = {"detail": f"{refusal}: {fields}", "errors": response.data}
    return response


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/") or "application/json" in request.headers.get("Accept", "")


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return JsonResponse({"detail": f"no such resource: {request.path}"}, status=status.HTTP_404_NOT_FOUND)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if _is_api(request):
        return JsonResponse({"detail": "internal error; it has been logged"}, status=500)
    return defaults.server_error(request)
