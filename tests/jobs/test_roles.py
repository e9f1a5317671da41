"""Host roles (``runconveyor --role/--queues``) and the release step (``manage.py release``).

The role tests ask ``runconveyor --dry-run`` what it would start: the same
specs, built by the same code, that the supervisor gets without it. The
release tests run two real ``manage.py release`` processes against a fresh
database while the test itself holds the release lock, so both are seen
waiting on it before either can migrate; then the lock is let go.
"""

from __future__ import annotations

import fcntl
import io
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from jobs.core.queues import all_queues, get_queue, queue_names, reload_queue_table
from jobs.ops.release import RELEASE_LOCK_KEY, sqlite_lock_path
from jobs.ops.roles import Role, host_specs, parse_queues, parse_roles
from jobs.ops.supervisor import pool_spec
from tests.databases import postgresql_only
from tests.workers import ROOT, wait_for


def _runconveyor(*args: str) -> str:
    out = io.StringIO()
    call_command("runconveyor", *args, "--dry-run", stdout=out)
    return out.getvalue()


def _process_names(output: str) -> list[str]:
    """The processes a dry run lists, by name (the lines between "Processes" and the connections)."""
    lines = output.split("\nProcesses\n", 1)[1].split("\nDatabase connections:", 1)[0].splitlines()
    return [line.split()[0] for line in lines]


def _host_connections(output: str) -> int:
    match = re.search(r"^Database connections: this host at most (\d+) of a budget of \d+", output, re.MULTILINE)
    assert match, output
    return int(match.group(1))


@pytest.fixture
def queue_overrides(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str, str], None]]:
    """Set ``QUEUE_*`` variables for the test; the queue table is re-read, and again afterwards."""

    def override(name: str, value: str) -> None:
        monkeypatch.setenv(name, value)
        reload_queue_table()

    yield override
    monkeypatch.undo()
    reload_queue_table()


# --- roles ----------------------------------------------------------------------------------------


def test_a_worker_host_runs_only_the_pools_of_its_queues():
    # Given a worker host for two queues
    # When runconveyor lists what it would start
    output = _runconveyor("--role", "workers", "--queues", "thumbnails,csv-export")

    # Then it runs those two pools (in the queue table's order), no web server and no scheduler
    assert _process_names(output) == ["pool:csv-export", "pool:thumbnails"]
    specs = host_specs(parse_roles(["workers"]), parse_queues("thumbnails,csv-export"))
    assert [spec.name for spec in specs] == ["pool:csv-export", "pool:thumbnails"]
    for spec in specs:
        queue = spec.argv[spec.argv.index("--queues") + 1]
        assert spec.argv[2] == "rundramatiq" and spec.name == "pool:" + queue
    assert "/admin/" not in output  # no web URLs on a host without the web role


def test_a_web_host_runs_only_uvicorn():
    output = _runconveyor("--role", "web")

    assert _process_names(output) == ["web"]
    (spec,) = host_specs(parse_roles(["web"]), all_queues())
    assert spec.argv[1:3] == ["-m", "uvicorn"]
    assert "http://localhost:8000/admin/" in output


def test_a_scheduler_host_runs_only_the_scheduler():
    output = _runconveyor("--role", "scheduler")

    assert _process_names(output) == ["scheduler"]
    (spec,) = host_specs(parse_roles(["scheduler"]), all_queues())
    assert spec.argv[2] == "runscheduler"


def test_without_roles_a_host_runs_everything_as_make_run_does():
    output = _runconveyor()

    assert _process_names(output) == ["web", *("pool:" + name for name in queue_names()), "scheduler"]


def test_roles_repeat_and_combine():
    # --role is repeatable; a value may also list several, and naming one twice runs it once
    assert _process_names(_runconveyor("--role", "scheduler", "--role", "web")) == ["web", "scheduler"]
    assert _process_names(_runconveyor("--role", "web,scheduler", "--role", "web")) == ["web", "scheduler"]
    assert parse_roles(["scheduler,workers"]) == (Role.WORKERS, Role.SCHEDULER)


def test_queues_apply_to_the_workers_role_among_all_three():
    output = _runconveyor("--queues", "maintenance")

    assert _process_names(output) == ["web", "pool:maintenance", "scheduler"]


def test_an_unknown_role_is_refused_naming_it_and_the_roles():
    with pytest.raises(CommandError) as error:
        _runconveyor("--role", "workers", "--role", "database")

    assert str(error.value) == "unknown role 'database': choose from web, workers, scheduler"


def test_an_unknown_queue_exits_non_zero_naming_it_and_the_queues():
    # Given a worker host's command line with a misspelt queue, run as an operator runs it
    result = subprocess.run(
        [sys.executable, "manage.py", "runconveyor", "--role", "workers", "--queues", "thumbnails,thumbnail"],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings_test"},
        capture_output=True,
        text=True,
        timeout=60,
    )

    # Then it stops before starting anything, and says which name is wrong and which are right
    assert result.returncode != 0
    assert "unknown queue 'thumbnail': the queues are " + ", ".join(queue_names()) in result.stderr
    assert "Processes" not in result.stdout


def test_queues_without_the_workers_role_are_refused():
    with pytest.raises(CommandError, match="needs the workers role"):
        _runconveyor("--role", "web", "--queues", "thumbnails")
    with pytest.raises(CommandError, match="--queues is empty"):
        _runconveyor("--role", "workers", "--queues", ",")


# --- the connection budget, per host -------------------------------------------------------------


def test_a_web_host_counts_two_connections_per_uvicorn_process(monkeypatch):
    monkeypatch.setenv("WEB_WORKERS", "3")

    output = _runconveyor("--role", "web")

    assert _host_connections(output) == 6


def test_a_worker_host_counts_only_its_own_pools(queue_overrides):
    # Given thumbnails at 1 process x 2 threads and csv-export at 1 x 1 (each process adds 3 helpers)
    queue_overrides("QUEUE_THUMBNAILS_THREADS", "2")
    assert (get_queue("thumbnails").processes, get_queue("csv-export").processes) == (1, 1)
    assert get_queue("csv-export").threads == 1

    output = _runconveyor("--role", "workers", "--queues", "thumbnails,csv-export")

    # Then the host counts (2 + 3) + (1 + 3), not every queue's pool
    assert _host_connections(output) == 9
    everything = sum(pool_spec(policy).db_connections for policy in all_queues())
    assert everything > 9


def test_a_scheduler_host_counts_its_threads_and_two_more(settings):
    settings.SCHEDULER_THREADS = 5

    output = _runconveyor("--role", "scheduler")

    assert _host_connections(output) == 7


def test_the_budget_line_says_it_is_shared_by_every_host(monkeypatch, settings):
    # Given a budget that this web host alone exceeds
    monkeypatch.setenv("WEB_WORKERS", "4")
    settings.DB_CONNECTION_BUDGET = 6

    output = _runconveyor("--role", "web")

    # Then the host's own figure is flagged, and the operator is told the budget covers all hosts
    assert "this host at most 8 of a budget of 6 — OVER BUDGET" in output
    assert "DB_CONNECTION_BUDGET is for all hosts together" in output
    assert "PostgreSQL's max_connections" in output


# --- the release step ----------------------------------------------------------------------------


def _release_env(database_url: str, var_dir: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings_test",
        "DATABASE_URL": database_url,
        # Each "host" has its own var directory (and so its own STATIC_ROOT).
        "CONVEYOR_VAR_DIR": str(var_dir),
    }
    for name in ("ADMIN_USERNAME", "ADMIN_PASSWORD"):
        env.pop(name, None)
    return env


def _start_release(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "manage.py", "release"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _finish(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def _assert_one_migrated_and_one_found_nothing(logs: list[Path], codes: list[int]) -> None:
    outputs = [log.read_text() for log in logs]
    assert codes == [0, 0], outputs
    for output in outputs:
        assert "waiting for it to finish" in output and "Release step done." in output, output
    migrated = [output for output in outputs if "Applying contenttypes.0001_initial... OK" in output]
    found_nothing = [output for output in outputs if "No migrations to apply." in output]
    assert len(migrated) == 1 and len(found_nothing) == 1, outputs
    # The second found the first one's staff account too: one account was created, once.
    assert sum(output.count("Created staff account admin") for output in outputs) == 1, outputs


@pytest.fixture
def fresh_postgres_database() -> Iterator[str]:
    """An empty database of this test's own (named after the suite's), dropped afterwards."""
    params = settings.DATABASES["default"]
    name = f"{params['NAME']}_release"
    password = ":" + quote(params["PASSWORD"], safe="") if params.get("PASSWORD") else ""
    server = f"postgres://{params.get('USER') or 'postgres'}{password}@{params.get('HOST') or '127.0.0.1'}"
    server += f":{params.get('PORT') or 5432}"
    with psycopg.connect(server + "/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"{server}/{name}"
    with psycopg.connect(server + "/postgres", autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.slow
@postgresql_only("pg_advisory_lock")
def test_two_hosts_releasing_at_once_on_postgresql_migrate_once(tmp_path, fresh_postgres_database):
    # Given an empty database whose release lock someone (this test) holds
    url = fresh_postgres_database
    with psycopg.connect(url, autocommit=True) as holder:
        holder.execute("SELECT pg_advisory_lock(%s)", [RELEASE_LOCK_KEY])

        # When two hosts start the release step at once
        logs = [tmp_path / "a.log", tmp_path / "b.log"]
        processes = [_start_release(_release_env(url, tmp_path / f"var-{i}"), log) for i, log in enumerate(logs)]
        try:
            # Then both wait for the lock (they say so, polling it), and neither has touched the schema
            def waiting() -> int:
                assert all(p.poll() is None for p in processes), [log.read_text() for log in logs]
                return sum("Another process is running the release step" in log.read_text() for log in logs)

            wait_for(lambda: waiting() == 2, 60, 0.05, "both release steps to wait for the advisory lock")
            time.sleep(1)  # a poll or two later, still waiting
            assert all(p.poll() is None for p in processes), [log.read_text() for log in logs]
            row = holder.execute("SELECT to_regclass('django_migrations') IS NULL").fetchone()
            assert row == (True,)

            # and once the lock is free, one migrates while the other waits, then finds nothing to do
            holder.execute("SELECT pg_advisory_unlock(%s)", [RELEASE_LOCK_KEY])
            codes = [process.wait(timeout=180) for process in processes]
        finally:
            _finish(processes)

        _assert_one_migrated_and_one_found_nothing(logs, codes)
        duplicates = holder.execute(
            "SELECT app, name FROM django_migrations GROUP BY app, name HAVING count(*) > 1"
        ).fetchall()
        assert duplicates == []
        assert holder.execute("SELECT count(*) FROM auth_user WHERE is_superuser").fetchone() == (1,)


def _blocked_flock_waiters(path: Path) -> int:
    """Processes waiting for a flock on ``path`` (``/proc/locks`` lists them with ``->``)."""
    inode = f":{path.stat().st_ino} "
    return sum(1 for line in Path("/proc/locks").read_text().splitlines() if "-> FLOCK" in line and inode in line)


@pytest.mark.slow
def test_two_release_steps_on_one_sqlite_file_migrate_once(tmp_path):
    # Given a new SQLite file whose release lock file someone (this test) holds
    database = tmp_path / "conveyor.sqlite3"
    lock_path = sqlite_lock_path(database)
    assert lock_path is not None
    with lock_path.open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)

        # When two processes start the release step at once
        logs = [tmp_path / "a.log", tmp_path / "b.log"]
        url = f"sqlite:///{database}"
        processes = [_start_release(_release_env(url, tmp_path / f"var-{i}"), log) for i, log in enumerate(logs)]
        try:
            # Then both wait on the lock file, and the database is still empty
            def waiting() -> int:
                assert all(p.poll() is None for p in processes), [log.read_text() for log in logs]
                return _blocked_flock_waiters(lock_path)

            wait_for(lambda: waiting() == 2, 60, 0.05, "both release steps to wait on the lock file")
            assert not database.exists() or database.stat().st_size == 0

            # and once it is free, one migrates and the other finds nothing to do
            fcntl.flock(held, fcntl.LOCK_UN)
            codes = [process.wait(timeout=180) for process in processes]
        finally:
            _finish(processes)

    _assert_one_migrated_and_one_found_nothing(logs, codes)
