from __future__ import annotations

from django.apps import AppConfig


class DocumentsConfig(AppConfig):
    name = "documents"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported once the models are: registers pdf-ocr, thumbnails,
        # thumbnail-maintenance and the two child types with the platform,
        # and the "documents" dataset that exports read.
        from documents import datasets  # noqa: F401
        from documents.job_types import PDF_OCR, THUMBNAILS_DOCUMENT
        from documents.services import documents_by_status
        from jobs.public import preload_in_children, register_activity_source, register_alert_rule, slow_jobs_rule

        # OCR starts one child per page: pdf2image and pytesseract are imported
        # once by the forkserver instead of by every child.
        preload_in_children("documents.ocr_child", warm_for_queue=PDF_OCR.queue)
        # Slow OCR from the start of the run. Slow thumbnails per document: a thumbnails batch (up to
        # 500 documents) fans out one child job per document, so each document is timed by its own
        # child's run, and the batch's length alone never fires it.
        register_alert_rule(slow_jobs_rule("ocr_duration", "Slow OCR", PDF_OCR.name, what="OCR documents took"))
        register_alert_rule(
            slow_jobs_rule(
                "thumbnails_duration",
                "Slow thumbnails",
                THUMBNAILS_DOCUMENT.name,
                what="documents' thumbnails took",
                item=lambda arguments: f"document {arguments.get('document_id', '?')}",
            )
        )
        # The daily digest's "documents" section.
        register_activity_source("documents", documents_by_status)
