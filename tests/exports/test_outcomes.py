"""How an export learns its job's final outcome: through the csv-export type's hooks."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from exports.models import Export, ExportFormat, ExportStatus
from exports.services import run_export
from jobs.core.context import RunningJob, set_current_job
from jobs.core.exceptions import UNEXPECTED_ERROR
from jobs.dispatch.outcomes import deliver_outcome, deliver_unsettled
from jobs.models import Job, JobStatus
from tests.exports.helpers import seed_many_jobs
from tests.jobs.helpers import start, wait_terminal
from tests.workers import wait_for


def _settled(export: Export) -> Export | None:
    """The export once it is final (None while it is pending or running)."""
    export.refresh_from_db()
    return export if export.status not in (ExportStatus.PENDING, ExportStatus.RUNNING) else None


@pytest.mark.slow
def test_export_stopped_by_its_time_limit_on_its_first_attempt_fails_with_the_reason(pools, media_root, user):
    # Given a csv-export worker whose time limit is 2 s (and two attempts per job), and an
    # export far too large for it (100,000 rows through openpyxl take many seconds)
    pools("csv-export", env={"MEDIA_ROOT": str(media_root), "QUEUE_CSV_EXPORT_TIME_LIMIT": "2"})
    seed_many_jobs(user, 100_000)
    # When the user asks for it
    job = start("csv-export", user, query_params={"dataset": "jobs", "filters": {"type": "bulk"}}, format="xlsx")
    assert job.max_attempts == 2
    job = wait_terminal(job, timeout=60)
    # Then the platform stopped it on its first attempt, for good (a timeout is never retried)
    assert job.status == JobStatus.FAILED
    assert job.error_message == "timed out after 2 s"
    assert job.attempts == 1
    # And the export says so too, instead of waiting for a retry that never comes
    export = wait_for(lambda: _settled(Export.objects.get(job=job)), timeout=10, what="the export to settle")
    assert export.status == ExportStatus.FAILED
    assert export.error_message == "timed out after 2 s"
    assert export.finished_at is not None
    assert not list(media_root.rglob("*.part"))


def _export_with_job(owner, export_status, job_status, error="", **job_fields):
    job = Job.objects.create(
        type="csv-export",
        queue="csv-export",
        actor="csv_export",
        status=job_status,
        error_message=error,
        max_attempts=2,
        **job_fields,
    )
    export = Export.objects.create(
        owner=owner,
        job=job,
        dataset="jobs",
        query_params={"filters": {}, "fields": ["id"], "ordering": "created_at"},
        format=ExportFormat.CSV,
        status=export_status,
    )
    return export, job


@pytest.mark.django_db
def test_a_failed_attempt_leaves_the_export_pending_for_the_next_attempt(media_root, user, monkeypatch):
    # Given an export whose job is running its first of two attempts
    export, job = _export_with_job(user, ExportStatus.PENDING, JobStatus.ACTIVE, attempts=1)
    monkeypatch.setattr("exports.services.run_in_child", _raise_connection_lost)
    set_current_job(RunningJob(str(job.id), "csv-export", "csv-export", thread_id=0, time_limit_s=None))
    try:
        # When the attempt fails with an error a retry may cure
        with pytest.raises(ConnectionError):
            run_export(str(export.id))
    finally:
        set_current_job(None)
    # Then the export waits for the next attempt, saying something went wrong (the driver's
    # text stays in the job's traceback, for staff), and no file is left
    export.refresh_from_db()
    assert export.status == ExportStatus.PENDING
    assert export.error_message == UNEXPECTED_ERROR
    assert not list(media_root.rglob("*.part"))


def _raise_connection_lost(*args, **kwargs):
    raise ConnectionError("the database went away")


@pytest.mark.django_db
def test_cancelled_export_job_fails_its_export_saying_so(user):
    export, job = _export_with_job(user, ExportStatus.PENDING, JobStatus.CANCELLED, "cancelled before it ran")
    assert deliver_outcome(str(job.id))
    export.refresh_from_db()
    assert export.status == ExportStatus.FAILED
    assert export.error_message == "cancelled: cancelled before it ran"


@pytest.mark.django_db
def test_outcome_hooks_leave_an_export_the_run_settled_as_it_is(user):
    # Given an export the run completed, whose job then failed (say, a late cancel of its progress write)
    export, job = _export_with_job(user, ExportStatus.RUNNING, JobStatus.FAILED, "ValueError: late")
    Export.mark_completed(str(export.id), file="exports/done.csv", row_count=1)
    # When the failure's hook runs (twice: hooks are at least once)
    deliver_outcome(str(job.id))
    deliver_outcome(str(job.id))
    # Then the export stays completed
    export.refresh_from_db()
    assert export.status == ExportStatus.COMPLETED and export.error_message == ""


@pytest.mark.django_db
def test_reconciler_delivers_the_failure_an_export_still_waits_for(user):
    # Given an export still running although its job failed a while ago (its worker died before the hook)
    finished = timezone.now() - timedelta(minutes=5)
    export, job = _export_with_job(
        user, ExportStatus.RUNNING, JobStatus.FAILED, "timed out after 300 s", finished_at=finished
    )
    waiting, _ = _export_with_job(user, ExportStatus.PENDING, JobStatus.QUEUED)
    # When the reconciler delivers unsettled outcomes
    deliver_unsettled(grace_s=1)
    # Then the export failed with the job's reason; one whose job still waits is left alone
    export.refresh_from_db()
    waiting.refresh_from_db()
    assert (export.status, export.error_message) == (ExportStatus.FAILED, "timed out after 300 s")
    assert waiting.status == ExportStatus.PENDING
