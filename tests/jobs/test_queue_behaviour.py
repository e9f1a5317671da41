"""Priorities, cancels and time limits, proven with real worker processes on Redis."""

from __future__ import annotations

import time

import psutil
import pytest

from jobs.dispatch.services import cancel_job
from jobs.models import JobStatus
from tests.jobs.helpers import canary, recorded, reload, start, wait_status, wait_terminal
from tests.workers import wait_for


def _sleep_processes(seconds: float) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if proc.info["cmdline"] == ["sleep", str(seconds)]:
            found.append(proc)
    return found


@pytest.mark.slow
def test_high_priority_job_starts_before_waiting_normal_jobs(pools):
    # Given the only worker slot is busy
    pools("maintenance", threads=1)
    blocker = canary(seconds=2)
    wait_status(blocker, JobStatus.ACTIVE)
    # And normal jobs are waiting in Redis
    normals = [canary() for _ in range(4)]
    # When a high-priority job arrives after them
    high = canary(priority="high")
    for job in [*normals, high]:
        wait_terminal(job)
    # Then it started before every normal job that was already waiting
    assert reload(high).started_at < min(reload(job).started_at for job in normals)


@pytest.mark.slow
def test_high_priority_jobs_keep_their_order_among_themselves(pools):
    pools("maintenance", threads=1)
    blocker = canary(seconds=1.5)
    wait_status(blocker, JobStatus.ACTIVE)
    normal = canary()
    highs = [canary(priority="high") for _ in range(3)]
    for job in [normal, *highs]:
        wait_terminal(job)
    starts = [reload(job).started_at for job in highs]
    assert starts == sorted(starts)
    assert max(starts) < reload(normal).started_at


@pytest.mark.slow
def test_cancelled_queued_job_never_runs(pools):
    pools("maintenance", threads=1)
    blocker = canary(seconds=1.5)
    wait_status(blocker, JobStatus.ACTIVE)
    waiting = canary()
    # When the waiting job is cancelled
    cancel_job(waiting)
    assert reload(waiting).status == JobStatus.CANCELLED
    wait_terminal(blocker)
    follower = wait_terminal(canary())
    # Then it never started, and the worker went on with the next job
    assert reload(waiting).started_at is None
    assert reload(waiting).status == JobStatus.CANCELLED
    assert follower.status == JobStatus.COMPLETED


@pytest.mark.slow
def test_running_job_stops_at_its_next_progress_call_when_cancelled(pools):
    pools("maintenance", threads=1)
    job = canary(seconds=30, steps=300)
    wait_for(lambda: reload(job).progress > 0, what="progress")
    cancel_job(job)
    wait_status(job, JobStatus.CANCELLED, timeout=10)
    assert job.progress < 100
    assert "cancelled" in job.error_message


@pytest.mark.slow
def test_cancel_kills_the_child_process_of_a_running_job(pools):
    pools("maintenance", threads=1)
    job = start("test-sleep-subprocess", queue="maintenance", seconds=313.1)
    wait_for(lambda: _sleep_processes(313.1), what="the sleep child")
    cancel_job(job)
    wait_status(job, JobStatus.CANCELLED, timeout=10)
    wait_for(lambda: not _sleep_processes(313.1), timeout=5, what="the child to die")
    # And the worker serves the next job
    assert wait_terminal(canary()).status == JobStatus.COMPLETED


@pytest.mark.slow
def test_time_limit_kills_a_job_blocked_in_a_subprocess_and_the_worker_goes_on(pools):
    # Given a queue whose time limit is 2 s
    pools("thumbnails", threads=1, env={"QUEUE_THUMBNAILS_TIME_LIMIT": "2"})
    # When a job blocks in a subprocess wait for much longer
    job = start("test-sleep-subprocess", queue="thumbnails", seconds=271.3)
    wait_terminal(job, timeout=20)
    # Then it failed with a readable reason, was not retried, and its child is gone
    assert job.status == JobStatus.FAILED
    assert job.error_message == "timed out after 2 s"
    assert job.attempts == 1
    assert not _sleep_processes(271.3)
    # And the same worker serves the next job
    assert wait_terminal(canary(queue="thumbnails")).status == JobStatus.COMPLETED


@pytest.mark.slow
def test_time_limit_kills_a_child_blocked_in_c_code(pools):
    pools("thumbnails", threads=1, env={"QUEUE_THUMBNAILS_TIME_LIMIT": "2"})
    started = time.monotonic()
    job = wait_terminal(start("test-sleep-child-c", queue="thumbnails", seconds=300), timeout=30)
    assert job.status == JobStatus.FAILED
    assert job.error_message == "timed out after 2 s"
    assert time.monotonic() - started < 30
    assert recorded("started") == [str(job.id)]
    assert wait_terminal(canary(queue="thumbnails")).status == JobStatus.COMPLETED
