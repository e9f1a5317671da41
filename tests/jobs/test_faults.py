"""Nothing is lost: Redis down at enqueue, a worker killed mid-job, SIGTERM during jobs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
from django.conf import settings
from django.utils.module_loading import import_string

from jobs.broker import ConveyorRedisBroker
from jobs.models import JobStatus
from jobs.reconciler import reconcile_once
from tests.jobs.helpers import canary, recorded, reload, start, wait_status, wait_terminal
from tests.services import PrivateRedis
from tests.workers import wait_for


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    server = PrivateRedis().start()
    yield server
    server.cleanup()


@pytest.fixture
def broker_on(private_redis: PrivateRedis) -> Iterator[ConveyorRedisBroker]:
    """Point this process's broker at the private Redis for the test."""
    previous = dramatiq.get_broker()
    options: dict[str, Any] = settings.DRAMATIQ_BROKER["OPTIONS"]  # type: ignore[assignment]
    middleware_paths: list[str] = settings.DRAMATIQ_BROKER["MIDDLEWARE"]  # type: ignore[assignment]
    broker = ConveyorRedisBroker(
        url=private_redis.url,
        namespace=options["namespace"],
        heartbeat_timeout=options["heartbeat_timeout"],
        middleware=[import_string(path)() for path in middleware_paths],
    )
    dramatiq.set_broker(broker)
    yield broker
    dramatiq.set_broker(previous)


@pytest.mark.slow
@pytest.mark.fault
def test_job_posted_while_redis_is_down_is_sent_when_it_is_back_and_runs_once(
    pools, broker_on, private_redis, staff_api
):
    # Given Redis is down
    private_redis.stop()
    # When a job is posted through the API
    response = staff_api.post("/api/jobs/test-record-run", {"queue": "maintenance", "seconds": 0}, format="json")
    # Then the API still accepts it
    assert response.status_code == 202, response.content
    job_id = response.json()["job_id"]
    from jobs.models import Job

    job = Job.objects.get(id=job_id)
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


@pytest.mark.slow
@pytest.mark.fault
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


@pytest.mark.slow
@pytest.mark.fault
def test_job_of_a_worker_killed_with_sigkill_is_redelivered_and_completes(pools):
    # Given a job running on a worker
    pool = pools("maintenance", threads=1)
    job = start("test-record-run", queue="maintenance", seconds=3)
    wait_status(job, JobStatus.ACTIVE)
    wait_for(lambda: recorded("runs"), what="the job to start")
    # When the worker process is killed with SIGKILL (its pool then exits)
    pool.kill_worker()
    pool.wait(timeout=30)
    # And the pool is started again, as the supervisor does
    pools("maintenance", threads=1)
    # Then the job is redelivered after the heartbeat timeout and completes
    wait_status(job, JobStatus.COMPLETED, timeout=45)
    assert job.attempts == 2
    assert recorded("runs") == [str(job.id), str(job.id)]
    assert recorded("done") == [str(job.id)]


@pytest.mark.slow
@pytest.mark.fault
def test_sigterm_during_jobs_loses_nothing(pools):
    # Given short jobs and one longer than the shutdown grace period (3 s)
    pool = pools("maintenance", threads=2)
    short = [start("test-record-run", queue="maintenance", seconds=0.5) for _ in range(6)]
    long = start("test-record-run", queue="maintenance", seconds=8)
    wait_for(lambda: len(recorded("runs")) >= 2, what="work to start")
    # When the pool's main process gets SIGTERM, and later starts again
    pool.terminate()
    assert pool.wait(timeout=60) is not None
    pools("maintenance", threads=2)
    # Then every job completes, each exactly once to the end
    for job in [*short, long]:
        assert wait_terminal(job, timeout=60).status == JobStatus.COMPLETED
    done = recorded("done")
    assert sorted(done) == sorted(str(job.id) for job in [*short, long])


@pytest.mark.slow
def test_duplicate_message_for_a_running_job_is_skipped(pools):
    import dramatiq as dq

    from jobs.services import message_for

    pools("maintenance", threads=2)
    job = start("test-record-run", queue="maintenance", seconds=1.5)
    wait_status(job, JobStatus.ACTIVE)
    # When the same message arrives again (say, the reconciler raced the worker)
    duplicate = message_for(job).copy(options={"conveyor_attempt": 0})
    dq.get_broker().enqueue(duplicate)
    follower = wait_terminal(canary())
    wait_terminal(job)
    # Then the job ran once
    assert follower.status == JobStatus.COMPLETED
    assert recorded("runs") == [str(job.id)]
