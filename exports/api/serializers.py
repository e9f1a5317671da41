from __future__ import annotations

from typing import Any

from rest_framework import serializers

from exports.models import Export, ExportStatus
from exports.services import download_url


class ExportSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    """What ``GET /api/exports/<id>`` answers."""

    job_id = serializers.UUIDField(read_only=True, allow_null=True)
    #: ``expired`` from ``expires_at`` on, before the daily job has deleted the file.
    status = serializers.ChoiceField(choices=ExportStatus.choices, source="current_status", read_only=True)
    owner = serializers.CharField(source="owner.username", read_only=True, allow_null=True, default=None)
    error = serializers.SerializerMethodField()
    download_url = serializers.SerializerMethodField()

    class Meta:
        model = Export
        fields = [
            "id",
            "owner",
            "dataset",
            "query_params",
            "format",
            "status",
            "job_id",
            "total_rows",
            "row_count",
            "size_bytes",
            "peak_memory_mb",
            "error",
            "created_at",
            "finished_at",
            "expires_at",
            "download_url",
        ]

    def get_error(self, export: Export) -> str | None:
        return export.error_message or None

    def get_download_url(self, export: Export) -> str | None:
        if export.status != ExportStatus.COMPLETED or export.is_expired():
            return None
        request: Any = self.context.get("request")
        url = download_url(export.id)
        return request.build_absolute_uri(url) if request is not None else url
