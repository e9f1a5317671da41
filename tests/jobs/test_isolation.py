"""Rescheduling without burning attempts, and memory ceilings on child processes."""

from __future__ import annotations

import pytest

from jobs.dispatch.services import build_job, create_jobs
from jobs.models import JobStatus
from tests.jobs.helpers import recorded, wait_terminal
from tests.workers import wait_for


def _job(actor: str, **arguments):
    job = build_job(job_type=actor, queue="maintenance", actor=actor, arguments={"queue": "maintenance", **arguments})
    return create_jobs([job])[0]


@pytest.mark.slow
def test_rescheduled_job_runs_later_with_its_attempts_unchanged(pools):
    pools("maintenance", threads=1)
    job = _job("test_reschedule_once", seconds=0.5)
    wait_for(lambda: recorded("runs"), what="the first run")
    job = wait_terminal(job)
    assert job.status == JobStatus.COMPLETED
    assert job.attempts == 1
    assert recorded("runs") == [str(job.id), str(job.id)]


@pytest.mark.slow
def test_child_over_its_memory_ceiling_is_stopped_and_the_worker_goes_on(pools):
    pools("maintenance", threads=1)
    job = wait_terminal(_job("test_hold_memory_in_child", megabytes=300, ceiling_mb=120))
    assert job.status == JobStatus.FAILED
    assert "120 MB memory ceiling" in job.error_message
    assert job.attempts == 2  # not a permanent error by itself: the domain decides
    small = wait_terminal(_job("test_hold_memory_in_child", megabytes=10, ceiling_mb=120), timeout=40)
    assert small.status == JobStatus.COMPLETED
