"""The Job state machine refuses illegal moves, so late writes never overwrite a final state."""

from __future__ import annotations

import pytest

from jobs.core.exceptions import JobNotCancellable, JobNotRetryable
from jobs.dispatch.services import build_job, create_jobs
from jobs.models import JobStatus
from jobs.state import transitions

pytestmark = pytest.mark.django_db


def _job(status=JobStatus.QUEUED, **fields):
    job = build_job(job_type="canary", queue="maintenance", actor="canary_maintenance", arguments={})
    job.status = status
    for key, value in fields.items():
        setattr(job, key, value)
    return create_jobs([job])[0]


def test_claim_starts_a_waiting_job_once():
    job = _job()
    assert transitions.claim(str(job.id), 0, "w1")
    assert not transitions.claim(str(job.id), 0, "w2")
    job.refresh_from_db()
    assert job.status == JobStatus.ACTIVE and job.attempts == 1 and job.worker_id == "w1"


def test_claim_refuses_a_message_for_an_earlier_attempt():
    job = _job(status=JobStatus.RETRYING, attempts=1)
    assert not transitions.claim(str(job.id), 0, "w1")
    assert transitions.claim(str(job.id), 1, "w1")


def test_late_progress_write_does_not_touch_a_completed_job():
    job = _job()
    transitions.claim(str(job.id), 0, "w1")
    assert transitions.mark_completed(str(job.id), "w1", {"ok": True})
    assert not transitions.record_progress(str(job.id), 40, {"message": "late"})
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED and job.progress == 100


def test_only_the_worker_running_a_job_can_finish_it():
    job = _job()
    transitions.claim(str(job.id), 0, "w1")
    assert not transitions.mark_completed(str(job.id), "w2", None)
    assert not transitions.mark_retrying(str(job.id), "w2", "e", "", job.created_at)


def test_completed_job_cannot_be_cancelled_or_retried():
    job = _job(status=JobStatus.COMPLETED)
    with pytest.raises(JobNotCancellable):
        transitions.request_cancel(job)
    with pytest.raises(JobNotRetryable):
        transitions.retry(job, extra_attempts=2)


def test_cancel_of_a_running_job_raises_the_flag_and_progress_then_refuses():
    job = _job()
    transitions.claim(str(job.id), 0, "w1")
    job.refresh_from_db()
    assert transitions.request_cancel(job) is False
    job.refresh_from_db()
    assert job.status == JobStatus.ACTIVE and job.cancel_requested_at is not None
    assert not transitions.record_progress(str(job.id), 50, {})


def test_error_text_is_bounded(settings):
    settings.JOBS_ERROR_MAX_CHARS = 50
    job = _job()
    transitions.claim(str(job.id), 0, "w1")
    transitions.mark_failed(str(job.id), "x" * 500, worker_id="w1")
    job.refresh_from_db()
    assert len(job.error_message) == 50


def test_estimated_completion_follows_the_progress_rate():
    from datetime import timedelta

    from django.utils import timezone

    now = timezone.now()
    job = _job(status=JobStatus.ACTIVE, started_at=now - timedelta(seconds=30), updated_at=now, progress=25)
    eta = job.estimated_completion
    assert eta is not None
    assert abs((eta - (now + timedelta(seconds=90))).total_seconds()) < 1
