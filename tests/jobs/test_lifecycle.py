"""The Job mirror through success, retry and failure, with real workers on Redis."""

from __future__ import annotations

import time

import pytest

from jobs.models import JobAttempt, JobStatus
from tests.jobs.helpers import canary, reload, wait_status, wait_terminal


@pytest.mark.slow
def test_canary_reports_progress_and_completes(pools):
    # Given a maintenance pool
    pools("maintenance", threads=1)
    # When a canary reports 4 steps over 2 seconds
    job = canary(seconds=2, steps=4)
    seen = set()
    deadline = time.monotonic() + 30
    while reload(job).status != JobStatus.COMPLETED and time.monotonic() < deadline:
        seen.add(job.progress)
        time.sleep(0.05)
    # Then it completed, and progress was seen between start and end
    assert job.status == JobStatus.COMPLETED
    assert seen & {25, 50, 75}
    assert job.progress == 100
    assert job.progress_data["message"] == "Step 4 of 4"
    assert job.attempts == 1
    assert job.started_at >= job.created_at and job.finished_at >= job.started_at
    assert job.result == {"queue": "maintenance", "steps": 4}


@pytest.mark.slow
def test_failing_job_is_retried_then_failed_and_never_shown_failed_in_between(pools):
    # Given a pool for a queue with 1 retry (maintenance: 2 attempts)
    pools("maintenance", threads=1)
    # When a canary fails every time
    job = canary(fail=True)
    statuses = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        statuses.append(reload(job).status)
        if job.status == JobStatus.FAILED:
            break
        time.sleep(0.01)
    # Then it went through retrying, and failed only at the very end
    assert JobStatus.RETRYING in statuses
    assert statuses.index(JobStatus.FAILED) == len(statuses) - 1
    assert job.attempts == 2
    assert "canary failed on request" in job.error_message
    assert "gave up after 2 attempts" in job.error_message
    assert "Traceback" in job.traceback
    assert list(JobAttempt.objects.filter(job=job).values_list("number", "outcome")) == [
        (1, "failed"),
        (2, "failed"),
    ]


@pytest.mark.slow
def test_permanent_error_fails_at_once_without_retry(pools):
    pools("maintenance", threads=1)
    job = wait_terminal(canary(fail="permanent"))
    assert job.status == JobStatus.FAILED
    assert job.attempts == 1
    assert "CanaryFailedPermanently" in job.error_message


@pytest.mark.slow
def test_retry_sends_a_failed_job_again_under_the_same_id(pools):
    from jobs.dispatch.services import retry_job

    pools("maintenance", threads=1)
    job = wait_terminal(canary(fail="permanent"))
    # When it is retried (it will fail again: same payload) its history grows
    retry_job(job)
    assert reload(job).status in (JobStatus.QUEUED, JobStatus.ACTIVE, JobStatus.FAILED)
    wait_status(job, JobStatus.FAILED)
    wait_for_attempts = reload(job).attempts
    assert wait_for_attempts == 2
    assert JobAttempt.objects.filter(job=job).count() == 2


@pytest.mark.slow
def test_message_for_an_actor_that_no_longer_exists_fails_the_job(pools):
    import dramatiq

    from jobs.dispatch.services import build_job, create_jobs

    pools("maintenance", threads=1)
    job = build_job(job_type="gone", queue="maintenance", actor="actor_that_was_removed", arguments={})
    create_jobs([job])
    dramatiq.get_broker().enqueue(__import__("jobs.dispatch.services", fromlist=["x"]).message_for(job))
    wait_status(job, JobStatus.FAILED)
    assert "actor_that_was_removed" in job.error_message and "no longer exists" in job.error_message


def test_worker_threads_know_that_the_job_row_keeps_return_values():
    # Dramatiq warns about every actor that returns a value unless the broker has its Results
    # middleware; the warning's log record alone cost ~4 % of a no-op job's CPU.
    import dramatiq
    import dramatiq.worker

    assert dramatiq.worker.has_results_middleware(dramatiq.get_broker())
