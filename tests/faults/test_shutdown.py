"""SIGTERM to every worker pool during jobs, then a restart: every job completes, each once to the end."""

from __future__ import annotations

import pytest

from jobs.core.queues import queue_names
from jobs.models import Job, JobStatus
from tests.jobs.helpers import canary, recorded, start, wait_terminal
from tests.workers import wait_for

pytestmark = [pytest.mark.fault, pytest.mark.slow]

# Queues that the counting test job (test-record-run) can run on; the others run canaries.
RECORDING_QUEUES = ("maintenance", "thumbnails", "csv-export")
GRACE_S = 3  # WORKER_SHUTDOWN_GRACE_S in config/settings_test.py


def _jobs_for(queue: str) -> list[Job]:
    """Short jobs that finish within the shutdown grace, and one that outlasts it."""
    if queue in RECORDING_QUEUES:
        return [start("test-record-run", queue=queue, seconds=seconds) for seconds in (0.5, 0.5, 0.5, GRACE_S + 5)]
    return [canary(queue=queue, seconds=seconds, steps=10) for seconds in (0.5, 0.5, 0.5, GRACE_S + 5)]


def _queues_under_way(jobs: list[Job]) -> int:
    active = Job.objects.filter(id__in=[job.id for job in jobs], status=JobStatus.ACTIVE)
    return active.values("queue").distinct().count()


def test_sigterm_to_every_pool_during_jobs_then_a_restart_completes_every_job(pools):
    # Given every queue's pool busy with jobs, one per queue longer than the shutdown grace
    queues = queue_names()
    running = {queue: pools(queue, threads=2) for queue in queues}
    jobs = [job for queue in queues for job in _jobs_for(queue)]
    wait_for(lambda: _queues_under_way(jobs) == len(queues), timeout=60, what="work under way on every queue")
    # When every pool's main process gets SIGTERM, and the pools start again once they are gone
    for pool in running.values():
        pool.terminate()
    for pool in running.values():
        pool.wait(timeout=60)
    for queue in queues:
        pools(queue, threads=2)
    # Then every job completes
    for job in jobs:
        assert wait_terminal(job, timeout=60).status == JobStatus.COMPLETED, job.error_message
    # And each counting job ran to the end exactly once
    recording = [str(job.id) for job in jobs if job.type == "test-record-run"]
    assert sorted(recorded("done")) == sorted(recording)
