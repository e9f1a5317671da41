"""Documents in the admin: read-only, with their pages."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.utils.html import format_html

from documents.models import Document, DocumentPage, DocumentStatus

STATUS_COLOURS = {
    DocumentStatus.UPLOADED: "#6c757d",
    DocumentStatus.PROCESSING: "#0d6efd",
    DocumentStatus.READY: "#198754",
    DocumentStatus.FAILED: "#dc3545",
}


class DocumentPageInline(admin.TabularInline):  # type: ignore[type-arg]
    model = DocumentPage
    extra = 0
    can_delete = False
    fields = ("number", "status", "source", "confidence", "attempts", "error")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Document)
class DocumentAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["original_name", "owner", "status_badge", "page_count", "size", "created_at"]
    list_filter = ["status", "created_at"]
    search_fields = ["id", "original_name", "sha256"]
    list_select_related = ["owner"]
    inlines = [DocumentPageInline]
    readonly_fields = [
        "id",
        "owner",
        "original_name",
        "file",
        "size",
        "sha256",
        "page_count",
        "status",
        "error",
        "ocr_job",
        "created_at",
        "updated_at",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="status", ordering="status")
    def status_badge(self, document: Document) -> str:
        colour = STATUS_COLOURS.get(DocumentStatus(document.status), "#6c757d")
        return format_html('<span style="color:{}">{}</span>', colour, document.get_status_display())
