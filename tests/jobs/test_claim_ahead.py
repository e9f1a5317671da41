"""Claims started at fetch time: a pool that holds more messages than threads, with real workers on Redis."""

from __future__ import annotations

import pytest

from jobs.models import Job, JobStatus
from tests.jobs.helpers import recorded, reload, start, wait_status, wait_terminal
from tests.workers import wait_for

pytestmark = pytest.mark.slow


def _claimed_by_one_worker(jobs: list[Job]) -> bool:
    rows = Job.objects.filter(id__in=[job.id for job in jobs], status=JobStatus.ACTIVE)
    return rows.count() == len(jobs) and rows.values("worker_id").distinct().count() == 1


def test_held_messages_are_claimed_early_and_given_back_on_shutdown(pools):
    # Given a pool with one thread that holds up to eight messages (its start-up canary among them)
    pool = pools("maintenance", threads=1, env={"dramatiq_queue_prefetch": "8"})
    running = start("test-record-run", queue="maintenance", seconds=1.5)
    wait_status(running, JobStatus.ACTIVE)
    held = [start("test-record-run", queue="maintenance", seconds=0.1) for _ in range(3)]
    # When the messages waiting for the busy thread are fetched, their jobs are claimed already
    wait_for(lambda: _claimed_by_one_worker([running, *held]), timeout=20, what="held jobs claimed ahead")
    assert recorded("runs") == [str(running.id)]
    # And the pool is stopped while they wait
    pool.terminate()
    pool.wait(timeout=60)
    # Then the running job finished, and the held ones went back to the queue with no attempt used
    assert reload(running).status == JobStatus.COMPLETED
    for job in held:
        job = reload(job)
        assert (job.status, job.attempts, job.worker_id) == (JobStatus.QUEUED, 0, "")
    # And the next pool runs each of them exactly once
    pools("maintenance", threads=1, env={"dramatiq_queue_prefetch": "8"})
    for job in held:
        assert wait_terminal(job).status == JobStatus.COMPLETED
    assert sorted(recorded("done")) == sorted(str(job.id) for job in [running, *held])


def test_a_deep_prefetch_runs_every_job_exactly_once(pools):
    pools("maintenance", processes=2, threads=2, env={"dramatiq_queue_prefetch": "8"})
    jobs = [start("test-record-run", queue="maintenance") for _ in range(60)]
    for job in jobs:
        assert wait_terminal(job).status == JobStatus.COMPLETED
    assert sorted(recorded("runs")) == sorted(str(job.id) for job in jobs)
    assert {reload(job).attempts for job in jobs} == {1}
