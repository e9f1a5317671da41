"""Documents in the admin: read-only, with their pages."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from documents.models import Document, DocumentPage, DocumentStatus
from jobs.public import Tone, status_badge

#: Each document status drawn like the jobs' statuses of the same kind.
STATUS_TONES = {
    DocumentStatus.UPLOADED: Tone.WAITING,
    DocumentStatus.PROCESSING: Tone.WORKING,
    DocumentStatus.READY: Tone.DONE,
    DocumentStatus.FAILED: Tone.FAILED,
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
        "thumbnails",
        "status",
        "error",
        "ocr_job_link",
        "created_at",
        "updated_at",
    ]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="status", ordering="status")
    def status_badge(self, document: Document) -> str:
        return status_badge(document.get_status_display(), STATUS_TONES.get(DocumentStatus(document.status)))

    @admin.display(description="OCR job")
    def ocr_job_link(self, document: Document) -> str:
        """The latest OCR job by its id (its state is the document's status, not read from the job)."""
        if document.ocr_job_id is None:
            return "-"
        url = reverse("admin:jobs_job_change", args=[document.ocr_job_id])
        return format_html('<a href="{}">{}</a>', url, document.ocr_job_id)
