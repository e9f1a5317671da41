"""Exports in the admin: read-only, with the weekly analytics files for staff."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.template.defaultfilters import filesizeformat
from django.utils.html import format_html

from exports.models import Export, ExportStatus
from exports.services import download_url
from jobs.public import Tone, status_badge

STATUS_TONES = {
    ExportStatus.PENDING: Tone.WAITING,
    ExportStatus.RUNNING: Tone.WORKING,
    ExportStatus.COMPLETED: Tone.DONE,
    ExportStatus.FAILED: Tone.FAILED,
    ExportStatus.EXPIRED: Tone.STOPPED,
}


@admin.register(Export)
class ExportAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = [
        "id",
        "dataset",
        "format",
        "status_badge",
        "owner_name",
        "row_count",
        "size",
        "created_at",
        "expires_at",
        "download",
    ]
    list_filter = ["status", "dataset", "format", "created_at"]
    search_fields = ["id", "dataset", "owner__username"]
    ordering = ["-created_at"]
    list_select_related = ["owner"]
    readonly_fields = [
        "id",
        "owner",
        "job",
        "dataset",
        "query_params",
        "all_owners",
        "format",
        "status",
        "total_rows",
        "row_count",
        "file",
        "size_bytes",
        "peak_memory_mb",
        "error_message",
        "created_at",
        "finished_at",
        "expires_at",
        "staff_notified_at",
        # The weekly analytics email links this page: it offers the file too.
        "download",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="status", ordering="status")
    def status_badge(self, export: Export) -> str:
        return status_badge(export.get_status_display(), STATUS_TONES.get(ExportStatus(export.status)))

    @admin.display(description="owner", ordering="owner__username")
    def owner_name(self, export: Export) -> str:
        return export.owner.username if export.owner else "staff (system)"

    @admin.display(description="size", ordering="size_bytes")
    def size(self, export: Export) -> str:
        return filesizeformat(export.size_bytes) if export.size_bytes is not None else "—"

    @admin.display(description="file")
    def download(self, export: Export) -> str:
        if export.status != ExportStatus.COMPLETED or export.is_expired():
            return "—"
        return format_html('<a href="{}">download</a>', download_url(export.id))
