"""Thumbnail maintenance (the scheduler's, nightly): thumbnails jobs for documents missing a size.

The ``thumbnail-maintenance`` job type is declared in ``job_types``, its
actor in ``tasks`` and its nightly schedule by a data migration of this app.
The work reuses ``services.enqueue_thumbnails``; this only finds what is
missing, in any status (an upload whose thumbnails job failed is
``uploaded`` for good unless someone asks for OCR).

It walks the documents by primary key in batches of
``THUMBNAIL_MAINTENANCE_BATCH`` rows: two index range reads per batch (the
batch's ids, then its documents missing a size), then one transaction that
starts the batch's thumbnails jobs and moves the pass's cursor past the
batch (``ThumbnailMaintenancePass``). So jobs go out from the first batch
on, a batch's cost does not grow with the table, and a run stopped anywhere
(killed, its time limit, cancelled) leaves the cursor after its last
committed batch: the next run resumes there, and no batch's jobs are
started twice. A run starts no batch after
``THUMBNAIL_MAINTENANCE_RUN_BUDGET_S``: it hands the rest of the walk to a
new job of its type, started in the same transaction as its last batch.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from documents import services
from documents.job_types import THUMBNAIL_MAINTENANCE
from documents.models import Document, ThumbnailMaintenancePass
from jobs.public import build_job, create_jobs, fenced, progress

logger = logging.getLogger(__name__)

#: Documents per thumbnails job it starts (the thumbnails API's own limit).
DOCUMENTS_PER_JOB = 500


def _wanted(sizes: list[int] | None) -> list[str]:
    return [str(size) for size in (sizes or list(settings.THUMBNAIL_SIZES))]


def _missing(documents: QuerySet[Document], sizes: list[int] | None) -> QuerySet[Document]:
    # Read from the row (Document.thumbnails): the storage is never asked, since on S3 that is a
    # request per file. A document without a stored file has nothing to render.
    return documents.exclude(thumbnails__has_keys=_wanted(sizes)).exclude(file="")


def documents_missing_thumbnails(
    sizes: list[int] | None = None,
    *,
    after: uuid.UUID | None = None,
    through: uuid.UUID | None = None,
    created_before: datetime | None = None,
) -> list[Document]:
    """Documents (any status) without a stored thumbnail of every size, by id, in one query.

    ``after`` / ``through`` bound the ids (a batch); ``created_before`` leaves
    out recent uploads, whose own thumbnails job may still be waiting.
    """
    documents = Document.objects.all()
    if after is not None:
        documents = documents.filter(id__gt=after)
    if through is not None:
        documents = documents.filter(id__lte=through)
    if created_before is not None:
        documents = documents.filter(created_at__lt=created_before)
    return list(_missing(documents, sizes).only("id", "owner_id").order_by("id"))


@dataclass(frozen=True)
class Batch:
    """One page of the walk: how many documents it covered, where it ends, and which miss a size."""

    checked: int
    #: The last id of the page: the cursor after it (unchanged for an empty page).
    last_id: uuid.UUID | None
    missing: list[Document]
    #: The page was not full: nothing lies beyond it.
    is_last: bool


def read_batch(after: uuid.UUID | None, size: int, *, created_before: datetime) -> Batch:
    """The page of ``size`` documents after ``after`` (by id) and those of them missing a thumbnail."""
    page = Document.objects.order_by("id")
    if after is not None:
        page = page.filter(id__gt=after)
    ids = list(page.values_list("id", flat=True)[:size])
    if not ids:
        return Batch(checked=0, last_id=after, missing=[], is_last=True)
    missing = documents_missing_thumbnails(after=after, through=ids[-1], created_before=created_before)
    return Batch(checked=len(ids), last_id=ids[-1], missing=missing, is_last=len(ids) < size)


def _start_thumbnails_jobs(documents: list[Document]) -> list[str]:
    return [
        str(services.enqueue_thumbnails(documents[start : start + DOCUMENTS_PER_JOB], owner=None).pk)
        for start in range(0, len(documents), DOCUMENTS_PER_JOB)
    ]


def _start_continuation() -> str:
    job = build_job(
        job_type=THUMBNAIL_MAINTENANCE.name,
        queue=THUMBNAIL_MAINTENANCE.queue,
        actor=THUMBNAIL_MAINTENANCE.actor,
        arguments={},
    )
    return str(create_jobs([job])[0].pk)


def regenerate_missing_thumbnails() -> dict[str, Any]:
    """Walk the open pass (or a new one) batch by batch; start thumbnails jobs for what is missing.

    Returns this run's share: documents checked, documents sent to
    thumbnails jobs (``documents``), the jobs, its batches and the longest
    batch's seconds, whether the pass finished, and the job that carries on
    (``continued_by``) when the run's budget ran out first.
    """
    started = time.monotonic()
    size = max(1, settings.THUMBNAIL_MAINTENANCE_BATCH)
    budget = settings.THUMBNAIL_MAINTENANCE_RUN_BUDGET_S
    created_before = timezone.now() - timedelta(seconds=settings.THUMBNAIL_MAINTENANCE_MIN_AGE_S)
    with fenced():
        walk = ThumbnailMaintenancePass.open_or_resume()
    total = Document.objects.count()
    cursor = walk.cursor
    run: dict[str, Any] = {
        "pass": walk.pk,
        "resumed_after": str(cursor) if cursor else None,
        "checked": 0,
        "documents": 0,
        "jobs": [],
        "batches": 0,
        "longest_batch_s": 0.0,
        "finished": False,
        "continued_by": None,
    }
    while True:
        batch_started = time.monotonic()
        batch = read_batch(cursor, size, created_before=created_before)
        # Decided before the write, so the hand-over commits with this batch or not at all.
        hand_over = not batch.is_last and batch_started - started >= budget
        with fenced():  # a run whose job was taken over starts no more jobs and moves nothing
            if not ThumbnailMaintenancePass.lock_at(walk.pk, cursor):
                logger.info("Thumbnail maintenance: pass %s moved past %s; another run walks it", walk.pk, cursor)
                run["stopped"] = "another run is walking this pass"
                return run
            jobs = _start_thumbnails_jobs(batch.missing)
            if hand_over:
                run["continued_by"] = _start_continuation()
            seconds = time.monotonic() - batch_started
            ThumbnailMaintenancePass.advance(
                walk.pk,
                cursor,
                batch.last_id,
                checked=batch.checked,
                repaired=len(batch.missing),
                seconds=seconds,
                last=batch.is_last,
            )
        cursor = batch.last_id
        run["checked"] += batch.checked
        run["documents"] += len(batch.missing)
        run["jobs"] += jobs
        run["batches"] += 1
        run["longest_batch_s"] = round(max(run["longest_batch_s"], seconds), 4)
        # The pass's totals: what earlier runs walked of it, and this run's share.
        checked, repaired = walk.checked + run["checked"], walk.repaired + run["documents"]
        progress(
            min(99.0, 100.0 * checked / total) if total else 99.0,
            f"Checked {checked:,} of {total:,} documents; {repaired:,} missing thumbnails",
            checked=checked,
            repaired=repaired,
        )
        if batch.is_last or hand_over:
            run["finished"] = batch.is_last
            break
    if run["documents"]:
        logger.info(
            "Thumbnail maintenance: %s of %s document(s) missing thumbnails, %s job(s)",
            run["documents"],
            run["checked"],
            len(run["jobs"]),
        )
    return run
