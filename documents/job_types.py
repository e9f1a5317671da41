"""The documents job types: ``pdf-ocr`` and ``thumbnails`` (registered when the app is ready)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import serializers
from rest_framework.exceptions import NotFound

from documents import services
from documents.models import Document
from jobs.models import JobPriority
from jobs.dispatch.registry import JobPlan, JobType, register_job_type


def _visible_document(user: Any, document_id: Any, *, lock: bool = False) -> Document:
    documents = services.visible_documents(user)
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
    running = services.running_ocr_job(document)
    if running is not None:
        return JobPlan(arguments={}, existing_job=running)
    return JobPlan(
        arguments={"document_id": str(document.id)},
        priority=data["priority"],
        estimated_duration_s=services.estimate_ocr_seconds(document.page_count or 1),
        on_created=lambda job: services.link_ocr_job(document, job),
    )


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
    visible = {str(pk) for pk in services.visible_documents(user).filter(id__in=ids).values_list("id", flat=True)}
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


PDF_OCR = register_job_type(
    JobType(
        name=services.OCR_JOB_TYPE,
        queue=services.OCR_QUEUE,
        actor="ocr_document",
        serializer=OcrRequestSerializer,
        description="OCR a document: text layer where usable, else tesseract, in page-range child jobs.",
        default_duration_s=60.0,
        plan=plan_ocr,
        on_children_done=services.on_ocr_children_done,
    )
)

THUMBNAILS = register_job_type(
    JobType(
        name=services.THUMBNAILS_JOB_TYPE,
        queue=services.THUMBNAILS_QUEUE,
        actor="make_thumbnails",
        serializer=ThumbnailsRequestSerializer,
        description="First-page thumbnails of documents, one child job per document.",
        default_duration_s=5.0,
        plan=plan_thumbnails,
        on_children_done=services.on_thumbnail_children_done,
    )
)
