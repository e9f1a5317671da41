"""Runaway jobs: a memory leak and a hang in C code are killed by their limits; the same worker goes on.

``tests/jobs/test_isolation.py`` proves the resident-memory ceiling on a child that
allocates at once, and ``tests/jobs/test_queue_behaviour.py`` the time limit on a
child blocked in C. Here the leak grows step by step (as a leak does) and both
runaways hit one worker process, which must serve the next job itself: no restart.
"""

from __future__ import annotations

import pytest

from jobs.dispatch.services import build_job, create_jobs
from jobs.models import JobStatus
from tests.faults.helpers import worker_pids
from tests.jobs.helpers import start, wait_terminal

pytestmark = [pytest.mark.fault, pytest.mark.slow]


def test_leaking_and_hanging_jobs_are_killed_by_their_limits_and_the_same_worker_serves_the_next(pools):
    # Given one worker process with a 3 s time limit
    pool = pools("maintenance", threads=1, env={"QUEUE_MAINTENANCE_TIME_LIMIT": "3"})
    (worker,) = worker_pids(pool)
    # When a job leaks memory in its child, 5 MB at a time, past a 100 MB ceiling
    leak = build_job(
        job_type="test_leak_memory_in_child",
        queue="maintenance",
        actor="test_leak_memory_in_child",
        arguments={"queue": "maintenance", "megabytes_per_step": 5, "ceiling_mb": 100},
    )
    leak = wait_terminal(create_jobs([leak])[0], timeout=60)
    # Then the ceiling stopped it (on every attempt)
    assert leak.status == JobStatus.FAILED
    assert "100 MB memory ceiling" in leak.error_message
    # When a job hangs in C code in its child
    hang = wait_terminal(start("test-sleep-child-c", queue="maintenance", seconds=300), timeout=30)
    # Then the time limit killed it
    assert hang.status == JobStatus.FAILED
    assert hang.error_message == "timed out after 3 s"
    # And the same worker process, never restarted, serves the next job
    follower = wait_terminal(start("test-record-run", queue="maintenance"))
    assert follower.status == JobStatus.COMPLETED
    assert follower.result == worker
    assert worker_pids(pool) == {worker}
