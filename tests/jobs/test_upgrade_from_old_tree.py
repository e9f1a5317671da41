"""A database built by the tree before jobs/ was arranged by role still works after the upgrade.

The old tree (``git archive``) migrates a database of the test's own and runs
its scheduler, which stores each APScheduler job with the function's old
path (``jobs.scheduling.runner:fire_scheduled``). Then this tree migrates the
same database and runs its scheduler: no stored job may name the old path,
and a schedule made by the old tree fires.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.db import connection

from tests.workers import ROOT, wait_for

#: The last commit before the move (the commit before the first one that touched jobs/public.py).
OLD_COMMIT = "5d4c8a2"
OLD_PATH = b"jobs.scheduling.runner:fire_scheduled"
NEW_PATH = b"jobs.ops.scheduling.runner:fire_scheduled"
SCHEDULE = "upgrade check: every second"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="builds a PostgreSQL database of its own"),
]


def _server() -> dict[str, Any]:
    params = connection.settings_dict
    return {
        "host": params.get("HOST") or "127.0.0.1",
        "port": int(params.get("PORT") or 5432),
        "user": params.get("USER") or "postgres",
        "password": params.get("PASSWORD") or None,
    }


def _admin(sql: str) -> None:
    with psycopg.connect(dbname="postgres", autocommit=True, **_server()) as admin:
        admin.execute(sql)


@pytest.fixture
def upgrade_db() -> Iterator[str]:
    """A PostgreSQL database of this test's own (dropped at the end); yields its name."""
    name = f"{connection.settings_dict['NAME']}_upgrade"
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _admin(f'CREATE DATABASE "{name}"')
    yield name
    _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def old_tree(tmp_path: Path) -> Path:
    """The project as of OLD_COMMIT, unpacked from git (the venv is this one's: same requirements)."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs the project's git history")
    archive = subprocess.run(["git", "archive", OLD_COMMIT], cwd=ROOT, capture_output=True, check=True).stdout
    tree = tmp_path / "old"
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(tree, filter="data")
    return tree


def _env(database: str) -> dict[str, str]:
    server = _server()
    password = f":{server['password']}" if server["password"] else ""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings_test",
        "DATABASE_URL": f"postgres://{server['user']}{password}@{server['host']}:{server['port']}/{database}",
        "REDIS_URL": settings.REDIS_URL,
        "DRAMATIQ_NAMESPACE": settings.DRAMATIQ_NAMESPACE,
    }


def _manage(tree: Path, database: str, *args: str) -> None:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=tree, env=_env(database), capture_output=True, timeout=120
    )
    assert done.returncode == 0, done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")


class Scheduler:
    """A ``manage.py runscheduler`` of one tree, re-reading the schedules every second."""

    def __init__(self, tree: Path, database: str, log: Path) -> None:
        self.log_path = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "manage.py", "runscheduler", "--no-default-duties", "--refresh-seconds", "1"],
                cwd=tree,
                env=_env(database),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def _query(database: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(dbname=database, autocommit=True, **_server()) as db:
        return db.execute(sql, params).fetchall()  # type: ignore[arg-type]


def _stored_jobs(database: str) -> list[bytes]:
    return [bytes(state) for (state,) in _query(database, "SELECT job_state FROM django_apscheduler_djangojob")]


def test_database_of_the_old_tree_upgrades_and_its_schedule_fires(upgrade_db, old_tree, clean_redis, tmp_path):
    # Given a database migrated by the old tree, with a schedule made there,
    _manage(old_tree, upgrade_db, "migrate", "--no-input")
    _query(
        upgrade_db,
        "INSERT INTO jobs_schedule (name, description, cron, interval_seconds, job_type, payload, paused,"
        " grace_seconds, created_at, updated_at)"
        " VALUES (%s, '', '', 1, 'canary', '{\"queue\": \"maintenance\"}', false, 60, now(), now()) RETURNING id",
        (SCHEDULE,),
    )
    # whose APScheduler jobs the old scheduler stored under the old function path
    old = Scheduler(old_tree, upgrade_db, tmp_path / "old-scheduler.log")
    try:
        wait_for(lambda: any(OLD_PATH in state for state in _stored_jobs(upgrade_db)), 30, 0.2, "old stored jobs")
        # and that it fired once already (so the upgrade meets a job it enqueued)
        wait_for(lambda: _query(upgrade_db, "SELECT id FROM jobs_schedulefire"), 30, 0.2, "a fire by the old scheduler")
    finally:
        old.stop()
    # No worker runs here: the job the old scheduler enqueued stays waiting,
    # and the next fires would be recorded "skipped" (previous job
    # unfinished). Finish it, as a worker would have.
    _query(
        upgrade_db,
        "UPDATE jobs_job SET status = 'completed', finished_at = now() WHERE status <> 'completed' RETURNING id",
    )

    # When this tree migrates it
    _manage(ROOT, upgrade_db, "migrate", "--no-input")

    # Then no stored job names the old path any more
    assert not [state for state in _stored_jobs(upgrade_db) if OLD_PATH in state]

    # and once this tree's scheduler runs, the old tree's schedule fires again
    (last_fire,) = _query(upgrade_db, "SELECT COALESCE(MAX(id), 0) FROM jobs_schedulefire")[0]
    new = Scheduler(ROOT, upgrade_db, tmp_path / "new-scheduler.log")
    try:
        wait_for(
            lambda: _query(
                upgrade_db,
                "SELECT f.id FROM jobs_schedulefire f JOIN jobs_schedule s ON s.id = f.schedule_id"
                " WHERE s.name = %s AND f.outcome = 'enqueued' AND f.id > %s",
                (SCHEDULE, last_fire),
            ),
            30,
            0.2,
            "a fire by the upgraded scheduler",
        )
    finally:
        new.stop()
    # from jobs it stored under the new path, without having to throw away a job it could not load
    stored = _stored_jobs(upgrade_db)
    assert stored and all(NEW_PATH in state for state in stored)
    assert "Unable to restore job" not in new.log(), new.log()
