"""Delayed jobs live in the database until they are due, so any delay works and cancels are clean."""

from __future__ import annotations

from datetime import timedelta

import dramatiq
import pytest
from django.utils import timezone

from jobs.dispatch.services import build_job, cancel_job, create_jobs
from jobs.models import Job, JobStatus
from jobs.ops.reconciler import reconcile_once
from jobs.worker.broker import ConveyorRedisBroker
from tests.jobs.helpers import reload, wait_status


def _scheduled_canary(at):
    job = build_job(
        job_type="canary",
        queue="maintenance",
        actor="canary_maintenance",
        arguments={"queue": "maintenance", "seconds": 0, "steps": 1, "fail": False},
        schedule_at=at,
    )
    return create_jobs([job])[0]


def _in_redis(job: Job) -> bool:
    broker: ConveyorRedisBroker = dramatiq.get_broker()  # type: ignore[assignment]
    return str(job.id) in broker.message_ids_in_redis(job.queue)


@pytest.mark.slow
def test_job_due_in_ten_days_stays_in_the_database_until_due(pools):
    pools("maintenance", threads=1)
    job = _scheduled_canary(timezone.now() + timedelta(days=10))
    assert reload(job).status == JobStatus.SCHEDULED
    reconcile_once()
    assert not _in_redis(job)
    # When its time comes (moved closer, as the clock would)
    Job.objects.filter(id=job.id).update(scheduled_for=timezone.now() + timedelta(seconds=1))
    reconcile_once()
    # Then it is sent with the remaining delay and runs
    wait_status(job, JobStatus.COMPLETED)
    assert job.started_at >= job.scheduled_for


@pytest.mark.slow
def test_job_due_within_the_horizon_goes_to_redis_with_its_delay(pools):
    pools("maintenance", threads=1)
    job = _scheduled_canary(timezone.now() + timedelta(seconds=2))
    assert _in_redis(job)
    wait_status(job, JobStatus.COMPLETED, timeout=20)
    assert job.started_at >= job.scheduled_for


@pytest.mark.slow
def test_cancelled_scheduled_job_never_runs(pools):
    pools("maintenance", threads=1)
    job = _scheduled_canary(timezone.now() + timedelta(seconds=1))
    cancel_job(job)
    follower = _scheduled_canary(timezone.now() + timedelta(seconds=1.5))
    wait_status(follower, JobStatus.COMPLETED, timeout=20)
    assert reload(job).status == JobStatus.CANCELLED and job.started_at is None
