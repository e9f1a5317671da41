"""Thumbnail maintenance (the scheduler's, nightly): thumbnails jobs for ready documents missing a size.

The ``thumbnail-maintenance`` job type is declared in ``job_types``, its
actor in ``tasks`` and its nightly schedule by a data migration of this app.
The work reuses ``services.enqueue_thumbnails``; this only finds what is
missing.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings

from documents import services
from documents.models import Document, DocumentStatus
from jobs.public import fenced, progress

logger = logging.getLogger(__name__)

#: Documents per thumbnails job it starts (the thumbnails API's own limit).
DOCUMENTS_PER_JOB = 500


def documents_missing_thumbnails(sizes: list[int] | None = None) -> list[Document]:
    """Ready documents without a stored thumbnail of every configured size.

    One query over the recorded thumbnails (``Document.thumbnails``): the
    storage is never asked, since on S3 that is a request per file.
    """
    wanted = [str(size) for size in (sizes or list(settings.THUMBNAIL_SIZES))]
    return list(
        Document.objects.filter(status=DocumentStatus.READY)
        .exclude(thumbnails__has_keys=wanted)
        .only("id", "owner_id")
        .order_by("created_at", "id")
    )


def regenerate_missing_thumbnails() -> dict[str, Any]:
    """Start thumbnails jobs (one per DOCUMENTS_PER_JOB documents) for what is missing."""
    documents = documents_missing_thumbnails()
    job_ids = []
    for start in range(0, len(documents), DOCUMENTS_PER_JOB):
        with fenced():  # a run whose job was taken over starts no more jobs
            job = services.enqueue_thumbnails(documents[start : start + DOCUMENTS_PER_JOB], owner=None)
        job_ids.append(str(job.pk))
        progress(
            min(100, 100 * (start + DOCUMENTS_PER_JOB) / len(documents)), f"Queued {len(job_ids)} thumbnails job(s)"
        )
    if documents:
        logger.info("Thumbnail maintenance: %s document(s) missing thumbnails, %s job(s)", len(documents), len(job_ids))
    return {"documents": len(documents), "jobs": job_ids}
