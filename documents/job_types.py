"""The documents job types, each declared once: queue, actor, request payload, plan and outcome hooks.

* ``pdf-ocr`` (actor ``ocr_document``): OCR a document, its pages read by
  ``pdf-ocr-pages`` children (``ocr_page_range``);
* ``thumbnails`` (``make_thumbnails``): first-page thumbnails, one
  ``thumbnails-document`` child (``make_document_thumbnails``) per document;
* ``thumbnail-maintenance`` (``maintain_thumbnails``; staff and the nightly
  schedule): thumbnails jobs for the documents missing a size.

The children's types are internal (no serializer): only their parent starts
them. The actors are declared from these types in ``tasks.py``, and the
registrations happen when ``DocumentsConfig.ready()`` imports this module.
The hooks live in ``outcomes``; the modules that start jobs of these types
(``services``, ``ocr``, ``thumbnails``) import this one, never the other way.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import serializers
from rest_framework.exceptions import NotFound

from documents import outcomes
from documents.models import Document
from jobs.public import (
    JobOrigin,
    JobPlan,
    JobPriority,
    JobType,
    get_queue,
    is_unfinished,
    recent_results,
    register_job_type,
    visible_to,
)

#: Measured on this kind of machine: one pdftoppm + tesseract pipeline at 300 dpi.
DEFAULT_PAGES_PER_MINUTE_PER_SLOT = 40.0


# -- pdf-ocr -------------------------------------------------------------------
def ocr_pages_per_minute() -> float:
    """Speed of recent completed OCR jobs (pages per minute), or the measured default."""
    pages = seconds = 0.0
    for result in recent_results(PDF_OCR.name):
        if isinstance(result, dict) and result.get("seconds") and result.get("pages"):
            pages += float(result["pages"])
            seconds += float(result["seconds"])
    if pages and seconds:
        return pages / seconds * 60.0
    return DEFAULT_PAGES_PER_MINUTE_PER_SLOT * get_queue(PDF_OCR.queue).concurrency


def estimate_ocr_seconds(page_count: int) -> float:
    return max(5.0, page_count / ocr_pages_per_minute() * 60.0)


def _visible_document(user: Any, document_id: Any, *, lock: bool = False) -> Document:
    documents = visible_to(Document.objects.all(), user)
    if lock:
        documents = documents.select_for_update()
    document = documents.filter(id=document_id).first()
    if document is None:
        raise NotFound(f"no such document: {document_id}")
    return document


class OcrRequestSerializer(serializers.Serializer):  # type: ignore[type-arg]
    file_id = serializers.UUIDField(help_text="The id of the document to OCR.")
    priority = serializers.ChoiceField(choices=JobPriority.choices, default=JobPriority.NORMAL)


def plan_ocr(user: Any, data: dict[str, Any]) -> JobPlan:
    """Answer with the running OCR job of the document if there is one; else start one."""
    document = _visible_document(user, data["file_id"], lock=True)
    if is_unfinished(document.ocr_job_id):
        return JobPlan(arguments={}, existing_job=document.ocr_job)
    document_id = str(document.id)
    return JobPlan(
        arguments={"document_id": document_id},
        priority=data["priority"],
        estimated_duration_s=estimate_ocr_seconds(document.page_count or 1),
        on_created=lambda job: Document.link_ocr_job(document_id, str(job.pk)),
    )


PDF_OCR = register_job_type(
    JobType(
        name="pdf-ocr",
        queue="pdf-processing",
        actor="ocr_document",
        serializer=OcrRequestSerializer,
        description="OCR a document: text layer where usable, else tesseract, in page-range child jobs.",
        default_duration_s=60.0,
        # Deferrable: the document is stored and readable already; OCR the client asks again for
        # later loses nothing, and pdf-processing (2 slots) is the queue a flood buries first.
        deferrable=True,
        plan=plan_ocr,
        on_children_done=outcomes.on_ocr_children_done,
        on_finished=outcomes.on_ocr_finished,
        on_failed=outcomes.on_ocr_failed,
        on_cancelled=outcomes.on_ocr_cancelled,
        unsettled=outcomes.documents_awaiting_ocr,
    )
)

OCR_PAGES = register_job_type(
    JobType(
        name="pdf-ocr-pages",
        queue=PDF_OCR.queue,
        actor="ocr_page_range",
        serializer=None,
        description="Read a range of pages of a document (a child of pdf-ocr).",
    )
)


# -- thumbnails ------------------------------------------------------------------
class ThumbnailsRequestSerializer(serializers.Serializer):  # type: ignore[type-arg]
    document_ids = serializers.ListField(
        child=serializers.UUIDField(), min_length=1, max_length=500, help_text="Documents to render."
    )
    sizes = serializers.ListField(
        child=serializers.IntegerField(min_value=16, max_value=2000),
        min_length=1,
        max_length=10,
        required=False,
    )
    format = serializers.ChoiceField(choices=["png", "webp"], default="png")
    force = serializers.BooleanField(default=False, help_text="Render sizes that already exist again.")
    priority = serializers.ChoiceField(choices=JobPriority.choices, default=JobPriority.NORMAL)


def plan_thumbnails(user: Any, data: dict[str, Any]) -> JobPlan:
    ids = list(dict.fromkeys(str(document_id) for document_id in data["document_ids"]))
    visible = {str(pk) for pk in visible_to(Document.objects.filter(id__in=ids), user).values_list("id", flat=True)}
    missing = [document_id for document_id in ids if document_id not in visible]
    if missing:
        raise NotFound(f"no such document: {', '.join(missing[:5])}")
    return JobPlan(
        arguments={
            "document_ids": ids,
            "sizes": sorted(set(data.get("sizes") or settings.THUMBNAIL_SIZES)),
            "image_format": data["format"],
            "force": data["force"],
        },
        priority=data["priority"],
    )


THUMBNAILS = register_job_type(
    JobType(
        name="thumbnails",
        queue="thumbnails",
        actor="make_thumbnails",
        serializer=ThumbnailsRequestSerializer,
        description="First-page thumbnails of documents, one child job per document.",
        default_duration_s=5.0,
        # Deferrable: rendering again (other sizes, a format) can wait; an upload's own thumbnails
        # are started by the upload itself and never refused.
        deferrable=True,
        plan=plan_thumbnails,
        on_children_done=outcomes.on_thumbnail_children_done,
    )
)

THUMBNAILS_DOCUMENT = register_job_type(
    JobType(
        name="thumbnails-document",
        queue=THUMBNAILS.queue,
        actor="make_document_thumbnails",
        serializer=None,
        description="First-page thumbnails of one document (a child of thumbnails).",
    )
)


# -- thumbnail maintenance -------------------------------------------------------
class NoArgumentsSerializer(serializers.Serializer):  # type: ignore[type-arg]
    pass


THUMBNAIL_MAINTENANCE = register_job_type(
    JobType(
        name="thumbnail-maintenance",
        queue=THUMBNAILS.queue,
        actor="maintain_thumbnails",
        serializer=NoArgumentsSerializer,
        description="Start thumbnails jobs for ready documents missing a thumbnail size (nightly).",
        default_duration_s=10.0,
        staff_only=True,
        plan=lambda user, data: JobPlan(arguments={}),
        # The platform's repair work, though it is about customers' documents (and so are
        # the thumbnails jobs it starts): counted apart from customer work.
        origin=JobOrigin.MAINTENANCE,
    )
)
