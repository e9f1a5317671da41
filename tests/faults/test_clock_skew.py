"""Two workers of one queue, one clock five minutes behind and one five minutes ahead: nothing notices.

Heartbeats, dead-worker cut-offs, presence and delayed messages' due times
are Redis's time, job timestamps the database's (``jobs.core.clock``), so a
host's own clock decides nothing. The workers run under libfaketime (Debian's
``faketime``, which ``scripts/bootstrap.sh test`` installs); this process,
Redis and PostgreSQL keep the machine's true clock, so the times this test
notes are true ones.
"""

from __future__ import annotations

import glob
import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone
from rest_framework.test import APIClient

from jobs.dispatch.services import build_job, create_jobs
from jobs.models import Job, JobStatus
from tests.faults.helpers import worker_lost_attempts
from tests.faults.results import record
from tests.jobs.helpers import recorded, start, wait_status
from tests.workers import wait_for

pytestmark = [pytest.mark.fault, pytest.mark.slow]

#: Makes time.sleep work under libfaketime with a true monotonic clock (see its docstring).
SITE_DIR = Path(__file__).resolve().parent / "skewed_clock"
SKEW_S = 300
QUEUE = "maintenance"
THREADS = 3
LONG_JOB_S = 10
DELAYS_S = (4.0, 4.5, 5.0, 5.0)
#: How far from its due time a delayed job may start (the delay queue is looked at about once a second).
DUE_TOLERANCE_S = 2.0
HEARTBEAT_TIMEOUT_S = 6


def _libfaketime() -> str | None:
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketimeMT.so.1"))
    return found[0] if found else None


def _skewed(library: str, offset_s: int) -> dict[str, str]:
    """The environment of a process whose wall clock is ``offset_s`` off, as on a host with a wrong clock."""
    return {
        "LD_PRELOAD": library,
        "FAKETIME": f"{offset_s:+d}",
        # Only the wall clock is off: timers that measure intervals stay true, as on a real host.
        "FAKETIME_DONT_FAKE_MONOTONIC": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(SITE_DIR), os.environ.get("PYTHONPATH")])),
        "DRAMATIQ_HEARTBEAT_TIMEOUT_MS": str(HEARTBEAT_TIMEOUT_S * 1000),
        "DRAMATIQ_HEARTBEAT_INTERVAL_MS": "500",
        "DRAMATIQ_MAINTENANCE_INTERVAL_MS": "1000",
    }


def _clock_of(env: dict[str, str]) -> float:
    """How far off a process started with ``env`` reads the wall clock, in seconds."""
    out = subprocess.run(
        [sys.executable, "-c", "import time; print(time.time())"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout) - time.time()


def _health() -> tuple[int, dict[str, Any]]:
    response = APIClient().get("/workers/health")
    return response.status_code, response.json()["queues"][QUEUE]


def _both_live() -> bool:
    _, queue = _health()
    return bool(queue["ok"]) and queue["live_workers"] == 2


class Observer:
    """Notes, by this process's true clock, when each job's run starts; and what health says meanwhile."""

    def __init__(self) -> None:
        self.starts: dict[str, list[float]] = {}
        self._seen = 0
        self._next_health = 0.0
        self.health_faults: list[dict[str, Any]] = []

    def poll(self) -> None:
        runs = recorded("runs")  # test-record-run appends its job id as it starts
        now = time.time()
        for job_id in runs[self._seen :]:
            self.starts.setdefault(job_id, []).append(now)
        self._seen = len(runs)
        if time.monotonic() >= self._next_health:
            self._next_health = time.monotonic() + 1.0
            _, queue = _health()
            if not queue["ok"] or queue["live_workers"] != 2:
                self.health_faults.append(queue)

    def until(self, condition: Any, timeout: float, what: str) -> None:
        def polled() -> bool:
            self.poll()
            return bool(condition())

        wait_for(polled, timeout, interval=0.05, what=what)


def _long_jobs(count: int) -> list[Job]:
    return [start("test-record-run", queue=QUEUE, seconds=LONG_JOB_S) for _ in range(count)]


def _delayed_job(delay_s: float) -> tuple[Job, float]:
    """A short job due in ``delay_s``, and its due time by the true clock."""
    job = build_job(
        job_type="test-record-run",
        queue=QUEUE,
        actor="test_record_run_maintenance",
        arguments={"queue": QUEUE, "seconds": 0.2},
        schedule_at=timezone.now() + timedelta(seconds=delay_s),
    )
    due = time.time() + delay_s
    with transaction.atomic():
        create_jobs([job])
    return job, due


def _finished(jobs: list[Job]) -> bool:
    ids = [job.id for job in jobs]
    return Job.objects.filter(id__in=ids, status=JobStatus.COMPLETED).count() == len(ids)


def test_workers_five_minutes_behind_and_ahead_keep_their_jobs_and_run_delayed_ones_on_time(pools, settings):
    library = _libfaketime()
    # A failure, not a skip: this scenario is part of what the suite proves.
    assert library is not None, "libfaketime is missing (Debian's faketime; scripts/bootstrap.sh test installs it)"
    behind_env, ahead_env = _skewed(library, -SKEW_S), _skewed(library, SKEW_S)
    assert abs(_clock_of(behind_env) + SKEW_S) < 5 and abs(_clock_of(ahead_env) - SKEW_S) < 5
    settings.WORKER_ALIVE_HEARTBEAT_S = HEARTBEAT_TIMEOUT_S
    observer = Observer()

    # Given a worker five minutes behind, running long jobs
    pools(QUEUE, threads=THREADS, env=behind_env)
    early_long = _long_jobs(2)
    for job in early_long:
        wait_status(job, JobStatus.ACTIVE, JobStatus.COMPLETED)
    # And a worker of the same queue five minutes ahead, with free slots, running maintenance every second
    pools(QUEUE, threads=THREADS, env=ahead_env)
    wait_for(_both_live, 30, interval=0.2, what="health to report both workers live")

    # When more long jobs arrive, and short ones delayed by a few seconds
    late_long = _long_jobs(2)
    delayed = [_delayed_job(delay_s) for delay_s in DELAYS_S]
    jobs = [*early_long, *late_long, *(job for job, _ in delayed)]
    observer.until(lambda: _finished(jobs), 60, "every job to complete")

    ids = [str(job.id) for job in jobs]
    ran_twice = [job_id for job_id in ids if len(observer.starts.get(job_id, [])) > 1]
    record(
        f"clock skew ±{SKEW_S // 60} min",
        jobs=len(ids),
        lost=len(ids) - Job.objects.filter(id__in=ids, status=JobStatus.COMPLETED).count(),
        ran_twice=len(ran_twice),
        recover_s=0,
        bound="0",
    )
    # Then health said both workers were live all along
    assert observer.health_faults == [], observer.health_faults[:3]
    # And no live worker's job was taken over: each ran once, on its first attempt
    assert worker_lost_attempts(ids) == [], "jobs of a live worker were taken over"
    assert ran_twice == [], f"jobs that ran twice: {ran_twice}"
    attempts = dict(Job.objects.filter(id__in=ids).values_list("id", "attempts"))
    assert set(attempts.values()) == {1}, attempts
    # And each delayed job started within DUE_TOLERANCE_S of its due time, neither early nor late
    off_by_s = {str(job.id): round(observer.starts[str(job.id)][0] - due, 2) for job, due in delayed}
    assert all(abs(off) <= DUE_TOLERANCE_S for off in off_by_s.values()), f"delayed jobs started off by (s): {off_by_s}"
