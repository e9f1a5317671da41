from __future__ import annotations

from django.apps import AppConfig


class DocumentsConfig(AppConfig):
    name = "documents"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the pdf-ocr and thumbnails job types, and the scheduler's thumbnail-maintenance.
        from documents import job_types, maintenance  # noqa: F401
        from jobs.worker.isolation import preload_in_children

        # OCR starts one child per page: pdf2image and pytesseract are imported
        # once by the forkserver instead of by every child.
        preload_in_children("documents.ocr_child", warm_for_queue="pdf-processing")
