"""The exports API: read an export, download its file. No business logic here."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import generics, status
from rest_framework.request import Request
from rest_framework.response import Response

from exports.api.serializers import ExportSerializer
from exports.models import Export, ExportStatus
from jobs.public import stored_file_response, visible_to


def visible_exports(request: Request) -> QuerySet[Export]:
    """Staff see every export; anyone else only their own (others' answer 404)."""
    return visible_to(Export.objects.select_related("owner"), request.user)


class ExportListView(generics.ListAPIView):  # type: ignore[type-arg]
    """``GET /api/exports``: your exports (staff: all), newest first."""

    serializer_class = ExportSerializer

    def get_queryset(self) -> QuerySet[Export]:
        return visible_exports(self.request).order_by("-created_at", "id")


class ExportDetailView(generics.RetrieveAPIView):  # type: ignore[type-arg]
    """``GET /api/exports/<id>``: status, row count, size, expiry and the download link."""

    serializer_class = ExportSerializer

    def get_queryset(self) -> QuerySet[Export]:
        return visible_exports(self.request)


class ExportDownloadView(generics.GenericAPIView):  # type: ignore[type-arg]
    """``GET /api/exports/<id>/download``: the file, streamed from the storage (owner or staff)."""

    serializer_class = ExportSerializer

    def get_queryset(self) -> QuerySet[Export]:
        return visible_exports(self.request)

    @extend_schema(responses={200: OpenApiTypes.BINARY, 409: OpenApiTypes.OBJECT, 410: OpenApiTypes.OBJECT})
    def get(self, request: Request, pk: str) -> StreamingHttpResponse | Response:
        export = self.get_object()
        # Judged by the time: the daily expire-exports job deletes the file later that night.
        if export.is_expired():
            return Response(
                {
                    "detail": "this export has expired; start a new one",
                    "expires_at": export.expires_at.isoformat(),
                },
                status=status.HTTP_410_GONE,
            )
        not_ready = Response(
            {"detail": f"the export is {export.status}; its file is not ready"},
            status=status.HTTP_409_CONFLICT,
        )
        if export.status != ExportStatus.COMPLETED or not export.file:
            return not_ready
        try:
            return stored_file_response(
                request,
                export.file.storage,
                export.file.name,
                content_type=export.content_type,
                filename=export.download_name,
                as_attachment=True,
            )
        except FileNotFoundError:
            return not_ready
