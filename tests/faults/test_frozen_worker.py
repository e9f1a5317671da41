"""A worker frozen past the heartbeat timeout, then resumed: its job completes once, under the new run.

SIGSTOP stands for every way a live worker stops heartbeating: a stalled VM,
a long GC pause, a network partition from Redis. Another process takes the job
over (``attempts`` 2); when the frozen one resumes, each write of its stale
run carries its fencing token (attempt 1) and is refused, and the watchdog
stops the run. Before, both runs kept writing and the job's progress went
backwards (the issue's report).
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import psutil
import pytest
import redis
from django.conf import settings
from django.db import connection

from jobs.models import Job, JobAttempt, JobStatus
from jobs.worker.middleware.presence import workers_key
from tests.faults.results import record
from tests.jobs.helpers import canary, reload, start, wait_status
from tests.workers import WorkerPool, wait_for

pytestmark = [pytest.mark.fault, pytest.mark.slow]

FAST_LIVENESS = {
    "DRAMATIQ_HEARTBEAT_TIMEOUT_MS": "6000",
    "DRAMATIQ_HEARTBEAT_INTERVAL_MS": "1000",
    "DRAMATIQ_MAINTENANCE_INTERVAL_MS": "1000",
    "JOBS_PROGRESS_MIN_INTERVAL_S": "0.2",
}


def _pid_of(worker_id: str) -> int:
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        entry = client.hget(workers_key(settings.DRAMATIQ_NAMESPACE), worker_id)
    finally:
        client.close()
    assert entry is not None, f"worker {worker_id} never announced itself"
    return int(json.loads(entry)["pid"])


def test_a_frozen_worker_resumed_after_a_take_over_writes_nothing_and_the_job_completes_once(pools):
    # Given two processes of one pool, one of them running a canary that reports progress often
    pool = pools("thumbnails", processes=2, threads=1, env=FAST_LIVENESS)
    job = canary("thumbnails", seconds=12, steps=60)
    wait_for(lambda: reload(job).status == JobStatus.ACTIVE and job.progress >= 10, 30, 0.1, "the canary to run")
    frozen = _pid_of(job.worker_id)
    assert frozen in {process.pid for process in pool.worker_processes()}

    # Watch its progress from here: once taken over, it must only go forward
    samples: list[tuple[float, int, int]] = []
    watching = threading.Event()

    def watch() -> None:
        try:
            while not watching.wait(0.05):
                row = Job.objects.filter(id=job.id).values("attempts", "progress").first()
                if row is not None:
                    samples.append((time.monotonic(), row["attempts"], row["progress"]))
        finally:
            connection.close()  # this thread's own

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        # When that process freezes past the heartbeat timeout, the other takes the job over
        os.kill(frozen, signal.SIGSTOP)
        stopped_at = time.monotonic()
        try:
            wait_for(lambda: reload(job).attempts == 2, 30, 0.2, "the other process to take the job over")
            took_over_s = time.monotonic() - stopped_at
            # ... and the frozen process wakes up while the new run is still going
            time.sleep(max(0.0, 14 - took_over_s))
        finally:
            os.kill(frozen, signal.SIGCONT)
            resumed_at = time.monotonic()
        assert reload(job).status == JobStatus.ACTIVE, "the new run ended before the frozen one woke up"
        # Then the job completes once, as the new run's
        wait_status(job, JobStatus.COMPLETED, timeout=40)
        recovered = time.monotonic() - stopped_at
        time.sleep(2)  # the stale run's last writes, had they gone through
    finally:
        watching.set()
        watcher.join()

    job = reload(job)
    assert job.status == JobStatus.COMPLETED and job.attempts == 2
    # The stale run's progress reports were refused: once the frozen process resumed, the job's
    # progress (the new run's) never went back
    after = [progress for at, attempts, progress in samples if at >= resumed_at and attempts == 2]
    assert after, "no progress seen after the frozen process resumed"
    backwards = [(a, b) for a, b in zip(after, after[1:], strict=False) if b < a]
    assert not backwards, f"progress went backwards after the frozen process resumed: {backwards[:5]}"
    assert job.worker_id != "" and _pid_of(job.worker_id) != frozen
    assert list(JobAttempt.objects.filter(job=job).values_list("number", "outcome")) == [
        (1, JobAttempt.Outcome.WORKER_LOST)
    ]
    # And the stale run was stopped, in the process that was frozen, which lives on
    assert "was taken over by another worker; this run stops" in pool.log()
    assert frozen in {process.pid for process in pool.worker_processes()}
    record(
        "worker frozen (SIGSTOP) past the heartbeat timeout, then resumed",
        jobs=1,
        lost=0,
        ran_twice=1,
        recover_s=recovered,
        bound="jobs the frozen worker held (1); writes of the stale run refused",
    )


def _sleeps(pool: WorkerPool, seconds: int) -> set[int]:
    """Pids of the ``sleep <seconds>`` children (what ``test-sleep-subprocess`` runs) of the pool's workers."""
    found = set()
    for worker in pool.worker_processes():
        try:
            children = worker.children()
        except psutil.NoSuchProcess:
            continue
        for child in children:
            try:
                if child.cmdline() in (["sleep", str(seconds)], ["sleep", f"{seconds:.1f}"]):
                    found.add(child.pid)
            except psutil.NoSuchProcess:
                pass
    return found


def test_a_stale_run_blocked_in_a_child_process_is_stopped_and_its_child_killed(pools):
    # Given a job blocked in a child process ("sleep 25") on one of two worker processes
    pool = pools("thumbnails", processes=2, threads=1, env=FAST_LIVENESS)
    seconds = 25
    job = start("test-sleep-subprocess", queue="thumbnails", seconds=seconds)
    wait_for(lambda: _sleeps(pool, seconds), 30, 0.1, "the job's child process to start")
    [stale_child] = _sleeps(pool, seconds)
    frozen = _pid_of(reload(job).worker_id)
    # When its worker freezes past the heartbeat timeout, the job is taken over (a new child), and
    # the frozen worker then resumes
    os.kill(frozen, signal.SIGSTOP)
    stopped_at = time.monotonic()
    try:
        wait_for(lambda: reload(job).attempts == 2, 30, 0.2, "the other process to take the job over")
        wait_for(lambda: len(_sleeps(pool, seconds)) == 2, 10, 0.1, "the new run's child process")
        time.sleep(max(0.0, 14 - (time.monotonic() - stopped_at)))
    finally:
        os.kill(frozen, signal.SIGCONT)
    # Then the watchdog of the resumed worker stops the stale run and kills its child at once
    # (it would sleep on for ~10 s more), while the new run's child goes on
    wait_for(lambda: stale_child not in _sleeps(pool, seconds), 5, 0.1, "the stale run's child to be killed")
    assert len(_sleeps(pool, seconds)) == 1
    # And the job completes once, as the new run's
    wait_status(job, JobStatus.COMPLETED, timeout=40)
    assert reload(job).attempts == 2
