"""Test-only actors: each is a behaviour the platform must control."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import dramatiq
import redis
from django.conf import settings

from jobs.core.context import current_job
from jobs.core.exceptions import PermanentJobError, Reschedule, TransientJobError
from jobs.worker.fanout import AwaitChildren, ChildJob, fan_out
from jobs.worker.isolation import run_command, run_in_child
from jobs.worker.progress import progress
from tests.testapp import work


def _record(kind: str) -> None:
    """Append the running job's id to a Redis list, so tests can count executions."""
    job = current_job()
    client = redis.Redis.from_url(settings.REDIS_URL)
    client.rpush(f"{settings.DRAMATIQ_NAMESPACE}:test:{kind}", job.job_id if job else "?")
    client.close()


def sleep_in_subprocess(seconds: float, queue: str) -> str:
    """Blocks in a subprocess wait (``sleep``), where no exception can reach the thread."""
    _record("started")
    progress(5, "sleeping in a subprocess")
    run_command(["sleep", str(seconds)])
    return "slept"


def sleep_in_child_c(seconds: float, queue: str) -> str:
    """Blocks in C code (libc sleep) inside a child process."""
    _record("started")
    return run_in_child(work.sleep_in_c, seconds)


def record_run(queue: str, seconds: float = 0.0, fail: bool = False) -> int:
    """Counts its executions (exactly-once checks) and optionally takes a while."""
    import time

    _record("runs")
    steps = max(1, int(seconds * 10))
    for step in range(steps):
        if seconds:
            time.sleep(seconds / steps)
        progress((step + 1) * 100 / steps, force=False)
    if fail:
        raise PermanentJobError("asked to fail")
    _record("done")
    return os.getpid()


def _declare(fn: Callable[..., Any], name: str, queue: str) -> None:
    globals()[name] = dramatiq.actor(actor_name=name, queue_name=queue)(fn)


for _queue in ("maintenance", "thumbnails", "csv-export"):
    _suffix = _queue.replace("-", "_")
    _declare(sleep_in_subprocess, f"test_sleep_in_subprocess_{_suffix}", _queue)
    _declare(sleep_in_child_c, f"test_sleep_in_child_c_{_suffix}", _queue)
    _declare(record_run, f"test_record_run_{_suffix}", _queue)


def fan_out_records(queue: str, children: int, fail: list[int] | None = None) -> AwaitChildren:
    """A parent that splits into ``children`` record_run children on the thumbnails queue."""
    failing = set(fail or [])
    return fan_out(
        [
            ChildJob(
                actor="test_record_run_thumbnails",
                arguments={"queue": "thumbnails", "seconds": 0.2, "fail": index in failing},
                job_type="test-record-run",
                queue="thumbnails",
            )
            for index in range(children)
        ],
        unit="pieces",
        progress_range=(10, 90),
    )


_declare(fan_out_records, "test_fan_out_records", "maintenance")


def reschedule_once(queue: str, seconds: float = 0.5) -> str:
    """Says "not now" the first time (like a rate limiter), then runs."""
    job = current_job()
    client = redis.Redis.from_url(settings.REDIS_URL)
    first = client.incr(f"{settings.DRAMATIQ_NAMESPACE}:test:reschedule:{job.job_id if job else '?'}") == 1
    client.close()
    _record("runs")
    if first:
        raise Reschedule(seconds, "rate limited; trying again shortly")
    return "ran"


def hold_memory_in_child(queue: str, megabytes: int, ceiling_mb: int) -> int:
    return run_in_child(work.hold_memory, megabytes, 5.0, rss_limit_mb=ceiling_mb)


def leak_memory_in_child(queue: str, megabytes_per_step: int, ceiling_mb: int) -> int:
    return run_in_child(work.leak_memory, megabytes_per_step, rss_limit_mb=ceiling_mb)


_declare(reschedule_once, "test_reschedule_once", "maintenance")
_declare(hold_memory_in_child, "test_hold_memory_in_child", "maintenance")
_declare(leak_memory_in_child, "test_leak_memory_in_child", "maintenance")


#: The password in ``hit_database_error``'s connection string.
# Fake: nothing listens at that host, and tests look for it in what owners see.
FAKE_DB_PASSWORD = "hunter2-not-for-owners"  # noqa: S105


def hit_database_error(queue: str, kind: str) -> None:
    """Fails the way library code does, with a driver's text not meant for people.

    ``sql``: runs invalid SQL (a real ``ProgrammingError`` naming the table);
    ``dsn``: a connection error whose text holds a connection string with its password.
    """
    import psycopg
    from django.db import connection

    if kind == "sql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT secret_column FROM conveyor_no_such_table")
    raise psycopg.OperationalError(
        "connection to server failed: host=db.internal port=5432 user=conveyor "
        f"password={FAKE_DB_PASSWORD} dbname=conveyor"
    )


def fail_holding_a_secret(queue: str, password: str) -> None:
    """Fails for good with a database URL in a local variable, an object's repr and the error's text."""
    database_url = f"postgres://conveyor:{password}@db.internal:5432/conveyor"
    spec = {"database": {"user": "conveyor", "password": password}, "url": database_url}
    raise PermanentJobError(f"could not export with {spec!r}")


def fail_once_then_succeed(queue: str) -> str:
    """Fails its first attempt with a temporary error, then succeeds."""
    job = current_job()
    client = redis.Redis.from_url(settings.REDIS_URL)
    first = client.incr(f"{settings.DRAMATIQ_NAMESPACE}:test:fail-once:{job.job_id if job else '?'}") == 1
    client.close()
    _record("runs")
    if first:
        raise TransientJobError("the mail server did not answer; trying again")
    return "ran"


_declare(hit_database_error, "test_hit_database_error", "maintenance")
_declare(fail_holding_a_secret, "test_fail_holding_a_secret", "maintenance")
_declare(fail_once_then_succeed, "test_fail_once_then_succeed", "maintenance")


def wait_then(queue: str, outcome: str) -> Any:
    """Waits for the test's "go" (a Redis key), then ends as ``outcome`` says.

    So that a test can take the database away first and have every kind of
    final write (completed, failed, retrying, rescheduled, cancelled,
    waiting for children) happen while it is gone.
    """
    import time

    from jobs.worker import stopping

    job = current_job()
    client = redis.Redis.from_url(settings.REDIS_URL)
    go = f"{settings.DRAMATIQ_NAMESPACE}:test:go"
    # A cancel asked before "go" is acted on after it (the watchdog's stop waits for the block).
    with stopping.uninterrupted():
        while not client.exists(go):
            time.sleep(0.05)
    first = client.incr(f"{settings.DRAMATIQ_NAMESPACE}:test:wait-then:{job.job_id if job else '?'}") == 1
    client.close()
    _record("runs")
    if outcome == "fail":
        raise PermanentJobError("asked to fail")
    if outcome == "retry" and first:
        raise TransientJobError("asked to fail once")
    if outcome == "reschedule" and first:
        raise Reschedule(0.5, "asked to wait")
    if outcome == "cancel":
        progress(50, "checking for a cancel", force=True)
    if outcome == "fanout":
        return fan_out(
            [
                ChildJob(
                    actor="test_record_run_maintenance",
                    arguments={"queue": "maintenance", "seconds": 0.1},
                    job_type="test-record-run",
                    queue="maintenance",
                )
                for _ in range(3)
            ],
            unit="pieces",
        )
    return outcome


_declare(wait_then, "test_wait_then", "maintenance")
