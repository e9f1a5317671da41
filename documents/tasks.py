"""The documents actors: thin, each calls one service function."""

from __future__ import annotations

from typing import Any

import dramatiq

from documents import services
from jobs.worker.fanout import AwaitChildren


@dramatiq.actor(actor_name="ocr_document", queue_name=services.OCR_QUEUE)
def ocr_document(document_id: str) -> AwaitChildren | dict[str, Any]:
    return services.start_document_ocr(document_id)


@dramatiq.actor(actor_name="ocr_page_range", queue_name=services.OCR_QUEUE)
def ocr_page_range(document_id: str, first_page: int, last_page: int) -> dict[str, Any]:
    return services.ocr_page_range(document_id, first_page, last_page)


@dramatiq.actor(actor_name="make_thumbnails", queue_name=services.THUMBNAILS_QUEUE)
def make_thumbnails(
    document_ids: list[str], sizes: list[int], image_format: str = "png", force: bool = False
) -> AwaitChildren:
    return services.fan_out_thumbnails(document_ids, sizes, image_format, force)


@dramatiq.actor(actor_name="make_document_thumbnails", queue_name=services.THUMBNAILS_QUEUE)
def make_document_thumbnails(
    document_id: str, sizes: list[int], image_format: str = "png", force: bool = False
) -> dict[str, Any]:
    return services.make_document_thumbnails(document_id, sizes, image_format, force)
