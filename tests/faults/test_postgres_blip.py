"""PostgreSQL away for 20 s while runs end: every final write lands once it is back, nothing is stuck.

Six jobs wait for the test's "go"; the test stops the private cluster, says
go, and each run ends its own way while the database is away: completed,
failed, retrying (then its second attempt), rescheduled (then run), cancelled
(asked before the outage, acted on after "go") and a fan-out parent whose wait
and children are written together. Before, only the completion went through
the state writer's retry: the other writes failed once, Dramatiq swallowed the
after-hook's error and acknowledged the message, and the job stayed ``active``
under a live worker, which the reconciler leaves alone on purpose.
"""

from __future__ import annotations

import time

import psycopg
import pytest
import redis
from django.conf import settings

from tests.faults.helpers import WAIT_THEN_OUTCOMES
from tests.faults.results import record
from tests.faults.test_postgres_restart import manage
from tests.workers import wait_for

pytestmark = [pytest.mark.fault, pytest.mark.slow]

OUTAGE_S = 20


def _rows(database_url: str, ids: list[str]) -> dict[str, tuple[str, int]]:
    with psycopg.connect(database_url, connect_timeout=2) as conn:
        rows = conn.execute(
            "SELECT id::text, status, attempts FROM jobs_job WHERE id::text = ANY(%s)", [ids]
        ).fetchall()
    return {job_id: (status, attempts) for job_id, status, attempts in rows}


def _children(database_url: str, parent: str) -> list[str]:
    with psycopg.connect(database_url, connect_timeout=2) as conn:
        rows = conn.execute("SELECT status FROM jobs_job WHERE parent_id::text = %s", [parent]).fetchall()
    return [status for (status,) in rows]


def test_every_kind_of_final_write_survives_a_20_s_database_outage(pools, private_postgres):
    database_url = private_postgres.create_database("conveyor")
    manage(database_url, "migrate", "--verbosity", "0")
    client = redis.Redis.from_url(settings.REDIS_URL)
    go = f"{settings.DRAMATIQ_NAMESPACE}:test:go"
    client.delete(go)
    pools("maintenance", processes=1, threads=8, env={"DATABASE_URL": database_url})
    # Given one job per kind of ending, all running and waiting for "go"
    script = "from tests.faults.helpers import enqueue_wait_then; print(*enqueue_wait_then())"
    ids = manage(database_url, "shell", "--verbosity", "0", "-c", script).split()
    outcomes = dict(zip(ids, WAIT_THEN_OUTCOMES, strict=True))
    wait_for(
        lambda: all(status == "active" for status, _ in _rows(database_url, ids).values()),
        30,
        0.2,
        "every job to be running",
    )
    cancel = next(job_id for job_id, outcome in outcomes.items() if outcome == "cancel")
    manage(
        database_url,
        "shell",
        "--verbosity",
        "0",
        "-c",
        f"from jobs.models import Job; from jobs.state.transitions import request_cancel; "
        f"request_cancel(Job.objects.get(id='{cancel}'))",
    )
    # When the database goes away and, while it is away, every run ends
    private_postgres.stop()
    client.set(go, "1")
    time.sleep(OUTAGE_S)
    private_postgres.start()
    back = time.monotonic()

    # Then every job reaches the state its run ended in, the worker having retried its writes
    expected = {job_id: str(WAIT_THEN_OUTCOMES[outcome]) for job_id, outcome in outcomes.items()}
    seen: dict[str, tuple[str, int]] = {}

    def settled() -> bool:
        seen.clear()
        seen.update(_rows(database_url, ids))
        return {job_id: status for job_id, (status, _) in seen.items()} == expected

    try:
        wait_for(settled, 60, 0.5, "every job to reach its final state")
    except AssertionError as exc:
        named = {outcomes[job_id]: row for job_id, row in seen.items()}
        raise AssertionError(f"{exc}; by outcome (status, attempts): {named}") from None
    recovered = time.monotonic() - back
    by_outcome = {outcomes[job_id]: row for job_id, row in seen.items()}
    assert by_outcome["retry"] == ("completed", 2)
    assert by_outcome["complete"] == ("completed", 1)
    fanout = next(job_id for job_id, outcome in outcomes.items() if outcome == "fanout")
    assert _children(database_url, fanout) == ["completed"] * 3
    runs = [run.decode() for run in client.lrange(f"{settings.DRAMATIQ_NAMESPACE}:test:runs", 0, -1)]
    client.close()
    twice = sum(1 for job_id in ids if runs.count(job_id) > (2 if outcomes[job_id] in ("retry", "reschedule") else 1))
    record(
        f"PostgreSQL stopped {OUTAGE_S} s while runs end",
        jobs=len(ids) + 3,
        lost=0,
        ran_twice=twice,
        recover_s=recovered,
    )
    assert twice == 0, sorted((outcomes[job_id], runs.count(job_id)) for job_id in ids)[:3]
