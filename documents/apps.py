from __future__ import annotations

from django.apps import AppConfig


class DocumentsConfig(AppConfig):
    name = "documents"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the pdf-ocr and thumbnails job types.
        from documents import job_types  # noqa: F401
