"""A reply lost after its statement committed: the worker's own claim is recognised as its own.

A proxy in front of PostgreSQL (``tests.faults.pg_proxy``) lets the claim
statement run and commit, then cuts the connection instead of forwarding the
reply. The state writer sends the claim again on a new connection; it finds
the job active under this worker, at the next attempt, for this very Redis
message, and counts it as applied (``jobs.state.batch.Claim``). Before, the
retried claim found nothing waiting, the worker took its own claim for a
duplicate's and skipped the message: the job stayed ``active`` for good.
"""

from __future__ import annotations

import time

import pytest
from django.db import connection

from jobs.models import Job, JobStatus
from tests.faults.pg_proxy import LosingProxy
from tests.faults.results import record
from tests.jobs.helpers import recorded, start
from tests.workers import wait_for

pytestmark = [pytest.mark.fault, pytest.mark.slow]

JOBS = 5


def test_a_claim_whose_reply_was_lost_runs_its_job_once(pools):
    proxy = LosingProxy(int(connection.settings_dict.get("PORT") or 5432))
    try:
        # Given a worker whose database connections go through the proxy, and the proxy set to
        # lose the reply to the first claim (the batch statement's "claimed" part)
        proxy.lose_reply_to("claimed AS (")
        user = connection.settings_dict.get("USER") or "postgres"
        pools(
            "maintenance",
            threads=2,
            env={"DATABASE_URL": proxy.url(user, str(connection.settings_dict["NAME"]))},
        )
        started = time.monotonic()
        jobs = [start("test-record-run", queue="maintenance") for _ in range(JOBS)]
        # When the claim commits and its reply is lost (the first one: a job's, or the worker's
        # start-up canary's)
        wait_for(lambda: proxy.dropped == 1, 30, 0.1, "the proxy to lose a claim's reply")
        # Then every job completes, each with one attempt: nothing is left active or run twice
        everything = Job.objects.all()
        wait_for(
            lambda: not everything.exclude(status=JobStatus.COMPLETED).exists(),
            40,
            0.2,
            "every job (the one whose claim reply was lost included) to complete",
        )
        recovered = time.monotonic() - started
        assert set(everything.values_list("attempts", flat=True)) == {1}
        runs = recorded("runs")
        assert sorted(runs) == sorted(str(job.id) for job in jobs)
        record(
            "lost reply to a claim (connection cut after commit)",
            jobs=everything.count(),
            lost=0,
            ran_twice=len(runs) - len(set(runs)),
            recover_s=recovered,
        )
    finally:
        proxy.close()
