"""A worker killed with SIGKILL mid-job: its job is redelivered and completes; nothing is lost."""

from __future__ import annotations

import time

import pytest
from django.db.models import Max

from jobs.core.queues import queue_names
from jobs.models import Job, JobStatus
from tests.faults.helpers import completed, enqueue_canaries, wait_all_completed, worker_lost_attempts
from tests.faults.results import record
from tests.jobs.helpers import canary, recorded, reload, start, wait_status, wait_terminal
from tests.workers import wait_for

pytestmark = [pytest.mark.fault, pytest.mark.slow]


@pytest.mark.parametrize("queue", queue_names())
def test_job_of_a_worker_killed_mid_job_is_redelivered_and_completes(pools, queue):
    # Given a job under way on the queue's worker, and more jobs waiting behind it
    pool = pools(queue, threads=1)
    job = canary(queue=queue, seconds=2, steps=20)
    waiting = [canary(queue=queue) for _ in range(3)]
    wait_for(lambda: reload(job).progress > 0, what="the job to be under way")
    # When the worker process is killed with SIGKILL (its pool then exits) and the pool is started again
    pool.kill_worker()
    pool.wait(timeout=30)
    pools(queue, threads=1)
    # Then the job is redelivered after the heartbeat timeout and completes on its second attempt
    wait_status(job, JobStatus.COMPLETED, timeout=45)
    assert job.attempts == 2
    assert worker_lost_attempts([str(job.id)]) == [str(job.id)]
    # And the jobs that were waiting complete on their first
    for other in waiting:
        assert wait_terminal(other).status == JobStatus.COMPLETED
        assert other.attempts == 1


def test_no_job_is_lost_out_of_a_thousand_when_a_worker_is_killed_mid_run(pools):
    # Given 1,000 small jobs being worked through by two worker processes
    pool = pools("maintenance", processes=2, threads=4)
    ids = enqueue_canaries(1000, "maintenance", seconds=0.05)
    wait_for(lambda: completed(ids) >= 200, timeout=60, what="the run to be under way")
    # When one worker process is killed with SIGKILL, and the pool is started again
    running_at_kill = Job.objects.filter(id__in=ids, status=JobStatus.ACTIVE).count()
    killed_at = time.monotonic()
    pool.kill_worker()
    pool.wait(timeout=30)
    pools("maintenance", processes=2, threads=4)
    # Then every job completes
    wait_all_completed(ids, timeout=180)
    recover_s = time.monotonic() - killed_at
    # And the jobs the killed process held were redelivered: their attempt count says so
    lost = worker_lost_attempts(ids)
    assert lost, "the killed process held no job: the kill did not land mid-job"
    redelivered = Job.objects.filter(id__in=ids, attempts=2).values_list("id", flat=True)
    record(
        "worker process killed (kill -9) mid-run",
        jobs=len(ids),
        lost=len(ids) - completed(ids),
        ran_twice=len(redelivered),
        recover_s=recover_s,
        bound=f"jobs the killed process held (of {running_at_kill} running in the pool)",
    )
    assert {str(job_id) for job_id in redelivered} == set(lost)
    assert Job.objects.filter(id__in=ids).aggregate(Max("attempts"))["attempts__max"] == 2


def test_duplicate_message_for_a_running_job_is_skipped(pools):
    import dramatiq as dq

    from jobs.dispatch.services import message_for

    pools("maintenance", threads=2)
    job = start("test-record-run", queue="maintenance", seconds=1.5)
    wait_status(job, JobStatus.ACTIVE)
    # When the same message arrives again (say, the reconciler raced the worker)
    duplicate = message_for(job).copy(options={"conveyor_attempt": 0})
    dq.get_broker().enqueue(duplicate)
    follower = wait_terminal(canary())
    wait_terminal(job)
    # Then the job ran once
    assert follower.status == JobStatus.COMPLETED
    assert recorded("runs") == [str(job.id)]
