"""Redis down: nothing is lost, workers carry on, the API keeps accepting jobs and the relay sends them later."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone

from jobs.models import Job, JobStatus
from jobs.ops.reconciler import reconcile_once
from tests.faults.helpers import completed, enqueue_canaries, statuses, worker_pids
from tests.faults.results import record
from tests.jobs.helpers import reload, start, wait_status
from tests.workers import wait_for

pytestmark = [pytest.mark.fault, pytest.mark.slow]

OUTAGE_S = 10


def test_redis_down_for_ten_seconds_mid_run_loses_no_job_and_the_api_keeps_accepting(
    pools, broker_on, private_redis, staff_api
):
    # Given 1,000 small jobs being worked through (Redis append-only)
    pool = pools("maintenance", processes=2, threads=4, env={"REDIS_URL": private_redis.url})
    workers = worker_pids(pool)
    ids = enqueue_canaries(1000, "maintenance", seconds=0.05)
    wait_for(lambda: completed(ids) >= 150, timeout=60, what="the run to be under way")
    # When Redis stops for 10 s
    private_redis.stop()
    assert completed(ids) < len(ids), "the run finished before Redis stopped"
    outage_ends = time.monotonic() + OUTAGE_S
    answers = []
    while time.monotonic() < outage_ends:
        # Then the API keeps accepting jobs (it records them; the send fails and is only logged)
        response = staff_api.post("/api/jobs/canary", {"queue": "maintenance"}, format="json")
        answers.append(response.status_code)
        if response.status_code == 202:
            ids.append(response.json()["job_id"])
        time.sleep(0.5)  # paces the posts over the outage; nothing waits on a condition here
    assert set(answers) == {202}, answers
    # When Redis is back (the relay runs as the scheduler would run it)
    private_redis.start()
    back_at = time.monotonic()

    seen: dict[str, int] = {}

    def relayed_and_done() -> bool:
        reconcile_once()
        seen.clear()
        seen.update(statuses(ids))
        return seen == {JobStatus.COMPLETED: len(ids)}

    try:
        wait_for(relayed_and_done, timeout=120, interval=1.0, what="every job to complete")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; jobs by status: {seen}") from None
    # Then none was lost, and the same worker processes did the work without a restart
    attempts = Job.objects.filter(id__in=ids).values_list("attempts", flat=True)
    record(
        f"Redis down {OUTAGE_S} s mid-run",
        jobs=len(ids),
        lost=len(ids) - seen.get(JobStatus.COMPLETED, 0),
        ran_twice=sum(1 for count in attempts if count != 1),
        recover_s=time.monotonic() - back_at,
    )
    assert len(ids) == 1000 + len(answers)
    assert pool.proc is not None and pool.proc.poll() is None
    assert worker_pids(pool) == workers


def test_job_posted_while_redis_is_down_is_sent_when_it_is_back_and_runs_once(
    pools, broker_on, private_redis, staff_api
):
    # Given Redis is down
    private_redis.stop()
    # When a job is posted through the API
    response = staff_api.post("/api/jobs/test-record-run", {"queue": "maintenance", "seconds": 0}, format="json")
    # Then the API still accepts it
    assert response.status_code == 202, response.content
    job = Job.objects.get(id=response.json()["job_id"])
    assert job.status == JobStatus.QUEUED
    # When Redis is back, a worker runs and the reconciler passes twice
    private_redis.start()
    pools("maintenance", threads=2, env={"REDIS_URL": private_redis.url})
    wait_for(lambda: reconcile_once().resent >= 1, timeout=10, interval=0.3, what="the reconciler to send it")
    wait_status(job, JobStatus.COMPLETED)
    reconcile_once()
    # Then it ran exactly once
    runs_key = f"{settings.DRAMATIQ_NAMESPACE}:test:runs"
    assert broker_on.client.lrange(runs_key, 0, -1) == [str(job.id).encode()]
    assert reload(job).attempts == 1


def test_job_whose_message_redis_lost_is_sent_again(pools, broker_on, private_redis):
    # Given a queued job whose message Redis lost (a restart without persistence)
    job = start("test-record-run", queue="maintenance")
    broker_on.client.flushall()
    # When the reconciler runs after its grace period and a worker is up
    pools("maintenance", threads=1, env={"REDIS_URL": private_redis.url})
    wait_for(lambda: reconcile_once().resent >= 1, timeout=10, interval=0.3, what="the resend")
    # Then the job completes once
    wait_status(job, JobStatus.COMPLETED)
    assert reload(job).attempts == 1


def test_job_whose_fetch_reply_was_lost_is_sent_again(broker_on, private_redis, pools, settings):
    # Given a queued job whose message a live worker fetched, but whose fetch
    # reply never arrived (a dropped connection): Redis holds the message in
    # that worker's in-flight set, where Dramatiq recovers it only once the
    # worker dies, and this worker stays alive
    settings.JOBS_STRANDED_AFTER_S = 1
    job = start("test-record-run", queue="maintenance")
    own_id, broker_on.broker_id = broker_on.broker_id, "ghost"
    try:
        [fetched] = broker_on.ack_and_fetch("maintenance", [], 1)  # into the ghost's in-flight set
    finally:
        broker_on.broker_id = own_id
    assert fetched is not None
    alive = threading.Event()

    def heartbeat() -> None:
        while not alive.wait(0.3):
            broker_on.client.zadd(broker_on.heartbeats_key, {"ghost": int(time.time() * 1000)})

    beating = threading.Thread(target=heartbeat, daemon=True)
    beating.start()
    try:
        Job.objects.filter(id=job.id).update(updated_at=timezone.now() - timedelta(seconds=5))
        pools("maintenance", threads=1, env={"REDIS_URL": private_redis.url})
        # When the reconciler runs
        wait_for(lambda: reconcile_once().resent >= 1, timeout=10, interval=0.3, what="the resend")
        # Then the job runs, once
        wait_status(job, JobStatus.COMPLETED)
        assert reload(job).attempts == 1
    finally:
        alive.set()
        beating.join()
