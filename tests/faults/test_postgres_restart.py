"""PostgreSQL restarted in the middle of a run: the workers survive and every job completes.

The cluster is a private one (``initdb``/``pg_ctl`` as the postgres user on a spare
port), so the restart never touches the machine's database. The worker pool and
the job producer run against it; the test reads the job table directly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
import pytest

from tests.faults.helpers import worker_pids
from tests.faults.results import record
from tests.workers import ROOT, wait_for

pytestmark = [pytest.mark.fault, pytest.mark.slow]

JOBS = 300


def _env(database_url: str) -> dict[str, str]:
    return {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings_test", "DATABASE_URL": database_url}


def manage(database_url: str, *args: str) -> str:
    """Run ``manage.py`` against the private cluster, with the test settings."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=_env(database_url), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@contextmanager
def scheduler(database_url: str, *, env: dict[str, str] | None = None, log_name: str = "") -> Iterator[Path]:
    """``manage.py runscheduler`` (it runs the reconciler, here every second) for the block; yields its log.

    ``env`` adds to the test environment (another Redis); ``log_name`` tells its log apart.
    """
    log_path = ROOT / "var" / f"test-scheduler{'-' + log_name if log_name else ''}-{os.getpid()}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "runscheduler"],
        cwd=ROOT,
        env={**_env(database_url), "JOBS_RECONCILE_INTERVAL_S": "1", **(env or {})},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield log_path
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def job_statuses(database_url: str, ids: list[str]) -> dict[str, int]:
    with psycopg.connect(database_url, connect_timeout=2) as conn:
        rows = conn.execute(
            "SELECT status, count(*) FROM jobs_job WHERE id::text = ANY(%s) GROUP BY status", [ids]
        ).fetchall()
    return {status: count for status, count in rows}


def test_workers_survive_a_postgres_restart_mid_run_and_every_job_completes(pools, private_postgres):
    # Given a run of small jobs on a worker pool whose database is the private cluster
    database_url = private_postgres.create_database("conveyor")
    manage(database_url, "migrate", "--verbosity", "0")
    pool = pools("maintenance", processes=1, threads=4, env={"DATABASE_URL": database_url})
    workers = worker_pids(pool)
    ids = manage(
        database_url,
        "shell",
        "--verbosity",
        "0",
        "-c",
        f"from tests.faults.helpers import enqueue_canaries; print(*enqueue_canaries({JOBS}, 'maintenance', 0.05))",
    ).split()
    assert len(ids) == JOBS
    wait_for(lambda: job_statuses(database_url, ids).get("completed", 0) >= 30, timeout=60, what="the run to start")
    # When PostgreSQL restarts in the middle of it
    private_postgres.stop()
    private_postgres.start()
    back_at = time.monotonic()
    assert job_statuses(database_url, ids).get("completed", 0) < JOBS, "the run finished before the restart"

    # Then every job completes (with the scheduler running the reconciler, as in production)
    seen: dict[str, int] = {}

    def all_completed() -> bool:
        seen.clear()
        seen.update(job_statuses(database_url, ids))
        return seen == {"completed": JOBS}

    with scheduler(database_url):
        try:
            wait_for(all_completed, timeout=90, interval=1.0, what="every job to complete")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; jobs by status: {seen}") from None
    with psycopg.connect(database_url, connect_timeout=2) as conn:
        [(ran_twice,)] = conn.execute(
            "SELECT count(*) FROM jobs_job WHERE id::text = ANY(%s) AND attempts <> 1", [ids]
        ).fetchall()
    record(
        "PostgreSQL restarted mid-run",
        jobs=JOBS,
        lost=JOBS - seen.get("completed", 0),
        ran_twice=ran_twice,
        recover_s=time.monotonic() - back_at,
    )
    assert ran_twice == 0
    # And the same worker processes did the work, without a restart
    assert pool.proc is not None and pool.proc.poll() is None
    assert worker_pids(pool) == workers
