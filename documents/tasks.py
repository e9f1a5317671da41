"""The documents actors: thin, each declared from its job type (name and queue) and calling one function."""

from __future__ import annotations

from typing import Any

from documents import maintenance, ocr, thumbnails
from documents.job_types import OCR_PAGES, PDF_OCR, THUMBNAIL_MAINTENANCE, THUMBNAILS, THUMBNAILS_DOCUMENT
from jobs.public import AwaitChildren, job_actor


@job_actor(PDF_OCR)
def ocr_document(document_id: str) -> AwaitChildren | dict[str, Any]:
    return ocr.start_document_ocr(document_id)


@job_actor(OCR_PAGES)
def ocr_page_range(document_id: str, first_page: int, last_page: int) -> dict[str, Any]:
    return ocr.ocr_page_range(document_id, first_page, last_page)


@job_actor(THUMBNAILS)
def make_thumbnails(
    document_ids: list[str], sizes: list[int], image_format: str = "png", force: bool = False
) -> AwaitChildren:
    return thumbnails.fan_out_thumbnails(document_ids, sizes, image_format, force)


@job_actor(THUMBNAILS_DOCUMENT)
def make_document_thumbnails(
    document_id: str, sizes: list[int], image_format: str = "png", force: bool = False
) -> dict[str, Any]:
    return thumbnails.make_document_thumbnails(document_id, sizes, image_format, force)


@job_actor(THUMBNAIL_MAINTENANCE)
def maintain_thumbnails() -> dict[str, Any]:
    return maintenance.regenerate_missing_thumbnails()
