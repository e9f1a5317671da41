"""Thumbnail maintenance (the scheduler's, nightly): thumbnails jobs for ready documents missing a size.

Registered from ``DocumentsConfig.ready()``: the ``thumbnail-maintenance``
job type and its actor on the thumbnails queue. The work reuses
``services.enqueue_thumbnails``; this only finds what is missing.
"""

from __future__ import annotations

import logging
from typing import Any

import dramatiq
from django.conf import settings
from django.db import transaction
from rest_framework import serializers

from documents import services
from documents.models import Document, DocumentStatus
from jobs.worker.progress import progress
from jobs.dispatch.registry import JobPlan, JobType, register_job_type

logger = logging.getLogger(__name__)

JOB_TYPE = "thumbnail-maintenance"
ACTOR = "maintain_thumbnails"
#: Documents per thumbnails job it starts (the thumbnails API's own limit).
DOCUMENTS_PER_JOB = 500


def documents_missing_thumbnails(sizes: list[int] | None = None) -> list[Document]:
    """Ready documents without a stored thumbnail of every configured size."""
    wanted = sizes or list(settings.THUMBNAIL_SIZES)
    missing = []
    for document in Document.objects.filter(status=DocumentStatus.READY).only("id", "owner_id").iterator():
        if any(document.thumbnail_path(size) is None for size in wanted):
            missing.append(document)
    return missing


def regenerate_missing_thumbnails() -> dict[str, Any]:
    """Start thumbnails jobs (one per DOCUMENTS_PER_JOB documents) for what is missing."""
    documents = documents_missing_thumbnails()
    job_ids = []
    for start in range(0, len(documents), DOCUMENTS_PER_JOB):
        with transaction.atomic():
            job = services.enqueue_thumbnails(documents[start : start + DOCUMENTS_PER_JOB], owner=None)
        job_ids.append(str(job.id))
        progress(
            min(100, 100 * (start + DOCUMENTS_PER_JOB) / len(documents)), f"Queued {len(job_ids)} thumbnails job(s)"
        )
    if documents:
        logger.info("Thumbnail maintenance: %s document(s) missing thumbnails, %s job(s)", len(documents), len(job_ids))
    return {"documents": len(documents), "jobs": job_ids}


class NoArgumentsSerializer(serializers.Serializer):  # type: ignore[type-arg]
    pass


THUMBNAIL_MAINTENANCE = register_job_type(
    JobType(
        name=JOB_TYPE,
        queue=services.THUMBNAILS_QUEUE,
        actor=ACTOR,
        serializer=NoArgumentsSerializer,
        description="Start thumbnails jobs for ready documents missing a thumbnail size (nightly).",
        default_duration_s=10.0,
        staff_only=True,
        plan=lambda user, data: JobPlan(arguments={}),
    )
)

maintain_thumbnails = dramatiq.actor(actor_name=ACTOR, queue_name=services.THUMBNAILS_QUEUE)(
    regenerate_missing_thumbnails
)
