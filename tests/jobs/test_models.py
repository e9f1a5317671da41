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
    assert transitions.mark_completed(str(job.id), "w1", {"ok": True}, attempt=1)
    assert not transitions.record_progress(str(job.id), 40, {"message": "late"})
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED and job.progress == 100


def test_only_the_worker_running_a_job_can_finish_it():
    job = _job()
    transitions.claim(str(job.id), 0, "w1")
    assert not transitions.mark_completed(str(job.id), "w2", None, attempt=1)
    assert not transitions.mark_retrying(str(job.id), "w2", "e", "", 1000, attempt=1)
    assert not transitions.mark_failed(str(job.id), "e", worker_id="w2", attempt=1)
    assert not transitions.mark_cancelled(str(job.id), "stop", worker_id="w2", attempt=1)


# -- fencing: a run whose job was taken over writes nothing (issue 17) ------------------------
def _taken_over():
    """A job whose attempt 1 (worker "old") was taken over by attempt 2 (worker "new")."""
    job = _job()
    assert transitions.claim(str(job.id), 0, "old", "m1")
    assert transitions.take_over(str(job.id), "old", "new", 1)
    return job


def test_a_stale_run_cannot_complete_fail_retry_cancel_or_report_progress():
    job = _taken_over()
    job_id = str(job.id)
    assert not transitions.mark_completed(job_id, "old", "stale", attempt=1)
    assert not transitions.mark_failed(job_id, "stale", worker_id="old", attempt=1)
    assert not transitions.mark_retrying(job_id, "old", "stale", "", 1000, attempt=1)
    assert not transitions.mark_cancelled(job_id, "stale", worker_id="old", attempt=1)
    assert not transitions.reschedule(job_id, "old", 5, "stale", attempt=1, message_id="m1")
    assert not transitions.requeue_after_shutdown(job_id, "old", 1)
    assert not transitions.record_progress(job_id, 90, {"message": "stale"}, attempt=1, worker_id="old")
    assert transitions.record_progress(job_id, 10, {"message": "new"}, attempt=2, worker_id="new")
    job.refresh_from_db()
    assert (job.status, job.attempts, job.worker_id, job.progress) == (JobStatus.ACTIVE, 2, "new", 10)
    assert transitions.mark_completed(job_id, "new", "ok", attempt=2)


def test_the_same_worker_at_an_older_attempt_is_stale_too():
    job = _job()
    job_id = str(job.id)
    assert transitions.claim(job_id, 0, "w1", "m1")
    assert transitions.take_over(job_id, "w1", "w1", 1)  # the same process took its own job back
    assert not transitions.mark_completed(job_id, "w1", "stale", attempt=1)
    assert transitions.mark_completed(job_id, "w1", "ok", attempt=2)


def test_fenced_domain_write_is_refused_for_a_stale_run_and_allowed_for_the_holder():
    from django.db import connection

    from jobs.core.context import RunningJob, set_current_job
    from jobs.core.exceptions import RunSuperseded
    from jobs.state.fencing import current_fence, fenced

    job = _taken_over()
    try:
        set_current_job(RunningJob(str(job.id), "canary", "maintenance", 0, None, attempt=1, worker_id="old"))
        with pytest.raises(RunSuperseded):
            with fenced():
                pytest.fail("the block of a stale run must not run")
        set_current_job(RunningJob(str(job.id), "canary", "maintenance", 0, None, attempt=2, worker_id="new"))
        with fenced() as fence:
            assert fence == current_fence() and str(fence) == f"{job.id}:2"
            assert connection.in_atomic_block
    finally:
        set_current_job(None)


# -- idempotent claims: a claim whose reply was lost is recognised as one's own ----------------
def test_a_claim_sent_again_after_a_lost_reply_counts_as_applied_once():
    job = _job()
    job_id = str(job.id)
    assert transitions.claim(job_id, 0, "w1", "m1")
    assert transitions.claim(job_id, 0, "w1", "m1")  # the retried claim: the same message
    job.refresh_from_db()
    assert (job.status, job.attempts, job.worker_id, job.run_message) == (JobStatus.ACTIVE, 1, "w1", "m1")


def test_a_duplicate_message_of_a_claimed_job_is_not_taken_for_ones_own():
    job = _job()
    job_id = str(job.id)
    assert transitions.claim(job_id, 0, "w1", "m1")
    assert not transitions.claim(job_id, 0, "w1", "m2")  # another message of the same job, same worker
    assert not transitions.claim(job_id, 0, "w2", "m1")
    assert not transitions.claim(job_id, 0, "w1", "")


def test_completion_and_failure_sent_again_after_a_lost_reply_count_as_applied():
    done, failed = _job(), _job()
    transitions.claim(str(done.id), 0, "w1", "a")
    transitions.claim(str(failed.id), 0, "w1", "b")
    assert transitions.mark_completed(str(done.id), "w1", 1, attempt=1)
    assert transitions.mark_completed(str(done.id), "w1", 1, attempt=1)
    assert transitions.mark_failed(str(failed.id), "e", worker_id="w1", attempt=1)
    assert transitions.mark_failed(str(failed.id), "e", worker_id="w1", attempt=1)
    assert failed.attempt_log.count() == 1


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
