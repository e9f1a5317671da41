"""Thumbnail maintenance: bounded batches by id, any status, resumable from its cursor."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from documents.maintenance import regenerate_missing_thumbnails
from documents.models import Document, DocumentStatus, ThumbnailMaintenancePass
from jobs.models import Job, JobStatus
from jobs.models.schedule import FireOutcome
from jobs.ops.scheduling.firing import run_now
from tests.documents import pdfs
from tests.jobs.helpers import wait_terminal
from tests.workers import wait_for

SIZES = [150, 300]
STATUSES = [DocumentStatus.UPLOADED, DocumentStatus.PROCESSING, DocumentStatus.READY, DocumentStatus.FAILED]


def _seed(owner: Any, count: int, *, missing_every: int, age: timedelta = timedelta(days=2)) -> set[str]:
    """``count`` documents in every status, by bulk insert; every ``missing_every``-th misses a size.

    Returns the ids of those missing one.
    """
    created = timezone.now() - age
    rows, missing = [], set()
    for n in range(count):
        document_id = uuid.uuid4()
        sizes = SIZES[:1] if n % missing_every == 0 else SIZES
        if n % missing_every == 0:
            missing.add(str(document_id))
        rows.append(
            Document(
                id=document_id,
                owner=owner,
                original_name=f"{n}.pdf",
                file=f"documents/{document_id.hex[:2]}/{document_id.hex}.pdf",
                size=1,
                sha256="0" * 64,
                status=STATUSES[n % len(STATUSES)],
                thumbnails={str(size): f"thumbnails/{document_id.hex}/{size}.png" for size in sizes},
                created_at=created,
            )
        )
    Document.objects.bulk_create(rows, batch_size=2000)
    return missing


def _documents_in_thumbnails_jobs() -> list[str]:
    return [
        document_id
        for arguments in Job.objects.filter(type="thumbnails").values_list("arguments", flat=True)
        for document_id in arguments["document_ids"]
    ]


@pytest.fixture
def maintenance_settings(settings: Any) -> Any:
    settings.THUMBNAIL_SIZES = SIZES
    settings.THUMBNAIL_MAINTENANCE_MIN_AGE_S = 3600
    settings.THUMBNAIL_MAINTENANCE_RUN_BUDGET_S = 3600
    return settings


def test_maintenance_walks_the_documents_in_batches_and_starts_each_batchs_jobs(maintenance_settings, user):
    # Given 11 documents in every status, 3 missing a size, plus a fresh upload and one without a file
    maintenance_settings.THUMBNAIL_MAINTENANCE_BATCH = 4
    missing = _seed(user, 9, missing_every=4)
    _seed(user, 1, missing_every=1, age=timedelta(seconds=0))  # its upload's own job may still be waiting
    no_file = _seed(user, 1, missing_every=1)
    Document.objects.filter(id__in=no_file).update(file="")
    assert len(missing) == 3
    # When maintenance runs
    result = regenerate_missing_thumbnails()
    # Then it walked 11 documents in 3 batches of at most 4 and finished the pass
    assert (result["checked"], result["batches"], result["finished"]) == (11, 3, True)
    walk = ThumbnailMaintenancePass.objects.get()
    assert (walk.checked, walk.batches, walk.repaired, walk.is_open) == (11, 3, 3, None)
    assert walk.finished_at is not None and walk.longest_batch_s > 0
    # And each document missing a size, whatever its status, went to exactly one thumbnails job
    assert sorted(_documents_in_thumbnails_jobs()) == sorted(missing)
    assert result["documents"] == 3
    statuses = set(Document.objects.filter(id__in=missing).values_list("status", flat=True))
    assert statuses - {DocumentStatus.READY}, "some of them are not ready"


def test_a_run_out_of_budget_hands_the_rest_of_the_walk_to_a_new_job(maintenance_settings, user):
    # Given 10 documents, batches of 3, and a budget spent after the first batch
    maintenance_settings.THUMBNAIL_MAINTENANCE_BATCH = 3
    maintenance_settings.THUMBNAIL_MAINTENANCE_RUN_BUDGET_S = 0
    missing = _seed(user, 10, missing_every=2)
    ordered = [str(pk) for pk in Document.objects.order_by("id").values_list("id", flat=True)]
    # When maintenance runs
    first = regenerate_missing_thumbnails()
    # Then it did one batch, left the pass open after it and started its continuation
    assert (first["checked"], first["batches"], first["finished"]) == (3, 1, False)
    walk = ThumbnailMaintenancePass.objects.get()
    assert walk.is_open and str(walk.cursor) == ordered[2]
    continuation = Job.objects.get(id=first["continued_by"])
    assert (continuation.type, continuation.status) == ("thumbnail-maintenance", JobStatus.QUEUED)
    # When the following runs go on, each resumes where the last stopped, until the pass is done
    runs = [first]
    while not runs[-1]["finished"]:
        runs.append(regenerate_missing_thumbnails())
        assert runs[-1]["resumed_after"] == ordered[3 * (len(runs) - 1) - 1]
    # Then 4 runs of one batch covered the 10 documents once, and each missing one went to one job
    assert [run["checked"] for run in runs] == [3, 3, 3, 1]
    walk.refresh_from_db()
    assert (walk.checked, walk.runs, walk.is_open) == (10, 4, None)
    assert sorted(_documents_in_thumbnails_jobs()) == sorted(missing)


def test_a_run_whose_pass_another_run_moved_writes_nothing(maintenance_settings, user):
    # Given an open pass that one run moved past its first batch
    _seed(user, 4, missing_every=1)
    walk = ThumbnailMaintenancePass.open_or_resume()
    first_id = Document.objects.order_by("id").values_list("id", flat=True)[0]
    assert ThumbnailMaintenancePass.advance(walk.pk, None, first_id, checked=1, repaired=1, seconds=0.01, last=False)
    # When a second run that read the old cursor tries to lock and move it
    locked = ThumbnailMaintenancePass.lock_at(walk.pk, None)
    moved = ThumbnailMaintenancePass.advance(walk.pk, None, first_id, checked=1, repaired=1, seconds=0.01, last=False)
    # Then neither succeeds, and the pass counts the batch once
    assert (locked, moved) == (False, False)
    walk.refresh_from_db()
    assert (walk.checked, walk.batches, walk.cursor) == (1, 1, first_id)
    # And a new run resumes that same pass
    assert ThumbnailMaintenancePass.open_or_resume().pk == walk.pk


@pytest.mark.slow
def test_maintenance_repairs_documents_that_are_not_ready_and_have_no_thumbnails(
    pools, media_root, default_schedule, user, document_for
):
    # Given an upload whose thumbnails never came (still "uploaded") and a document whose OCR failed
    uploaded = document_for(user, pdfs.text_pdf_bytes(["never thumbnailed"]), status=DocumentStatus.UPLOADED)
    failed = document_for(user, pdfs.text_pdf_bytes(["ocr failed"]), status=DocumentStatus.FAILED)
    Document.objects.filter(id__in=[uploaded.id, failed.id]).update(created_at=timezone.now() - timedelta(days=1))
    pools("thumbnails", threads=2, env={"MEDIA_ROOT": str(media_root)})
    # When the nightly thumbnail maintenance runs
    fired = run_now(default_schedule("thumbnail maintenance"))
    assert fired is not None and fired.outcome == FireOutcome.ENQUEUED and fired.job is not None
    maintenance = wait_terminal(fired.job, timeout=60)
    assert maintenance.status == JobStatus.COMPLETED, maintenance.error_message
    assert maintenance.result["documents"] == 2
    (thumbnails,) = Job.objects.filter(type="thumbnails")
    thumbnails = wait_terminal(thumbnails, timeout=120)
    # Then both have every thumbnail, stored, and keep their status
    assert thumbnails.status == JobStatus.COMPLETED, thumbnails.result
    for document, status in ((uploaded, DocumentStatus.UPLOADED), (failed, DocumentStatus.FAILED)):
        document.refresh_from_db()
        assert document.status == status
        assert document.thumbnail_sizes() == [150, 300, 600]
        assert all((media_root / document.thumbnail_name(size)).is_file() for size in (150, 300, 600))


@pytest.mark.slow
def test_maintenance_stopped_by_its_time_limit_resumes_from_its_cursor(pools, media_root, default_schedule, user):
    # Given 4,000 documents, 20 of them missing a size, and a pool whose time limit (1 s) stops a
    # walk of one document per batch long before its end
    total = 4000
    missing = _seed(user, total, missing_every=200)
    schedule = default_schedule("thumbnail maintenance")
    env = {"MEDIA_ROOT": str(media_root), "THUMBNAIL_SIZES": "150,300"}
    slow = pools(
        "thumbnails",
        env={
            **env,
            "QUEUE_THUMBNAILS_TIME_LIMIT": "1",
            "THUMBNAIL_MAINTENANCE_BATCH": "1",
            "THUMBNAIL_MAINTENANCE_RUN_BUDGET_S": "3600",
        },
    )
    # When the maintenance runs and hits the limit
    fired = run_now(schedule)
    assert fired is not None and fired.job is not None
    first = wait_terminal(fired.job, timeout=60)
    assert first.status == JobStatus.FAILED and "timed out" in first.error_message
    # Then its pass stays open at the last batch it committed, part of the way through
    walk = ThumbnailMaintenancePass.objects.get()
    stopped_at = walk.checked
    assert walk.is_open and 0 < stopped_at < total
    ordered = list(Document.objects.order_by("id").values_list("id", flat=True))
    assert walk.cursor == ordered[stopped_at - 1]
    slow.stop()
    # When the next run comes, on a pool with the usual limits
    pools("thumbnails", threads=2, env={**env, "THUMBNAIL_MAINTENANCE_BATCH": "500"})
    fired = run_now(schedule)
    assert fired is not None and fired.outcome == FireOutcome.ENQUEUED and fired.job is not None
    second = wait_terminal(fired.job, timeout=60)
    # Then it resumed after that cursor, walked only the rest, and finished the pass
    assert second.status == JobStatus.COMPLETED, second.error_message
    assert second.result["resumed_after"] == str(walk.cursor)
    assert second.result["checked"] == total - stopped_at and second.result["finished"]
    walk.refresh_from_db()
    assert (walk.checked, walk.runs, walk.is_open) == (total, 2, None)
    # And every document missing a size went to exactly one thumbnails job across the two runs
    wait_for(lambda: len(_documents_in_thumbnails_jobs()) >= len(missing), timeout=30, what="the thumbnails jobs")
    assert sorted(_documents_in_thumbnails_jobs()) == sorted(missing)
