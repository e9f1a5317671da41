"""Redis primary killed mid-run under Sentinel: the replica takes over, nothing is lost or restarted.

A primary, a replica and three sentinels (``tests/faults/sentinel_cluster.py``);
worker pools, the web server and the scheduler are configured with
``REDIS_SENTINELS``/``REDIS_SENTINEL_MASTER`` only, their ``REDIS_URL``
naming the first primary. The primary is killed with SIGKILL in the middle of
a run; the sentinels promote the replica, and every process must find it
without a restart. Jobs posted through the API meanwhile are accepted (a send
that fails is left to the reconciler). Replication is asynchronous, so the
last writes before the kill may be lost with the primary: executions are
counted in PostgreSQL (attempts, and the attempt log's ``worker-lost``
entries), never in Redis.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dramatiq
import pytest
import redis
import requests
from django.conf import settings
from django.utils.module_loading import import_string

from jobs.models import Job, JobStatus
from jobs.worker.broker import ConveyorRedisBroker
from tests.factories import api_token
from tests.faults.helpers import completed, enqueue_canaries, statuses, worker_lost_attempts, worker_pids
from tests.faults.results import record
from tests.faults.sentinel_cluster import MASTER_NAME, SentinelCluster
from tests.faults.test_postgres_restart import scheduler
from tests.web_server import WebServer
from tests.workers import database_url, wait_for

pytestmark = [pytest.mark.fault, pytest.mark.slow]

JOBS = 1000
#: Posts through the API go on this long after the sentinels name the new primary.
POST_AFTER_PROMOTION_S = 3.0


@pytest.fixture
def sentinel_cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[SentinelCluster]:
    """The deployment, and this process's environment pointing at it (inherited by every server started)."""
    cluster = SentinelCluster(db=int(settings.REDIS_URL.rpartition("/")[2] or 0)).start()
    for name, value in cluster.env().items():
        monkeypatch.setenv(name, value)
    yield cluster
    cluster.cleanup()


@pytest.fixture
def broker_on_sentinel(sentinel_cluster: SentinelCluster) -> Iterator[ConveyorRedisBroker]:
    """This process's broker on the deployment's primary, through a Sentinel client of the test's own."""
    previous = dramatiq.get_broker()
    options: dict[str, Any] = settings.DRAMATIQ_BROKER["OPTIONS"]  # type: ignore[assignment]
    middleware_paths: list[str] = settings.DRAMATIQ_BROKER["MIDDLEWARE"]  # type: ignore[assignment]
    broker = ConveyorRedisBroker(
        client=sentinel_cluster.client(),
        namespace=options["namespace"],
        heartbeat_timeout=options["heartbeat_timeout"],
        middleware=[import_string(path)() for path in middleware_paths],
    )
    dramatiq.set_broker(broker)
    yield broker
    dramatiq.set_broker(previous)


def test_killing_the_redis_primary_mid_run_fails_over_with_no_job_lost_and_no_process_restarted(
    sentinel_cluster, broker_on_sentinel, pools, staff
):
    # (The deployment is set up first so that it is torn down last, after the pools.)
    started = time.monotonic()
    # Given 1,000 small jobs being worked through by two worker processes, a web
    # server and the scheduler (reconciling every second), all through Sentinel
    web = WebServer().start()
    try:
        with scheduler(database_url()):
            pool = pools("maintenance", processes=2, threads=4)
            workers = worker_pids(pool)
            token = api_token(staff)
            ids = enqueue_canaries(JOBS, "maintenance", seconds=0.05)
            wait_for(lambda: completed(ids) >= 150, timeout=60, interval=0.1, what="the run to be under way")

            # When the primary is killed (SIGKILL) in the middle of the run
            running_at_kill = Job.objects.filter(id__in=ids, status=JobStatus.ACTIVE).count()
            killed_at = time.monotonic()
            sentinel_cluster.kill_primary()
            assert completed(ids) < JOBS, "the run finished before the primary was killed"

            # Then jobs posted through the API during the failover are accepted
            answers: list[int] = []
            promoted_at: float | None = None
            while promoted_at is None or time.monotonic() < promoted_at + POST_AFTER_PROMOTION_S:
                response = requests.post(
                    f"{web.url}/api/jobs/canary",
                    json={"queue": "maintenance"},
                    headers={"Authorization": f"Token {token}"},
                    timeout=30,
                )
                answers.append(response.status_code)
                if response.status_code == 202:
                    ids.append(response.json()["job_id"])
                if promoted_at is None and sentinel_cluster.master_port() == sentinel_cluster.replica_port:
                    promoted_at = time.monotonic()
                assert time.monotonic() - killed_at < 30, "the sentinels did not promote the replica"
                time.sleep(0.2)  # paces the posts over the failover; nothing waits on a condition here
            assert set(answers) == {202}, answers

            # And every job completes, on the promoted replica
            seen: dict[str, int] = {}

            def all_completed() -> bool:
                seen.clear()
                seen.update(statuses(ids))
                return seen == {JobStatus.COMPLETED: len(ids)}

            try:
                wait_for(all_completed, timeout=60, interval=0.5, what="every job to complete")
            except AssertionError as exc:
                raise AssertionError(f"{exc}; jobs by status: {seen}\n{pool.log()[-3000:]}") from None
            recover_s = time.monotonic() - killed_at
    finally:
        web.stop()

    # And a job ran twice only if it was running when the primary died
    assert promoted_at is not None
    attempts = dict(Job.objects.filter(id__in=ids).values_list("id", "attempts"))
    ran_twice = {str(job_id) for job_id, count in attempts.items() if count != 1} | set(worker_lost_attempts(ids))
    record(
        "Redis primary killed, Sentinel failover",
        jobs=len(ids),
        lost=len(ids) - seen.get(JobStatus.COMPLETED, 0),
        ran_twice=len(ran_twice),
        recover_s=recover_s,
        bound=f"jobs running at the kill ({running_at_kill})",
    )
    print(
        f"jobs {len(ids)} (posted during the failover {len(answers)}), running at the kill {running_at_kill}, "
        f"ran twice {len(ran_twice)}, promoted after {promoted_at - killed_at:.1f} s, "
        f"all completed {recover_s:.1f} s after the kill, test {time.monotonic() - started:.1f} s"
    )
    assert len(ran_twice) <= running_at_kill, sorted(ran_twice)
    # And the same worker processes did the work, without a restart
    assert pool.proc is not None and pool.proc.poll() is None
    assert worker_pids(pool) == workers


def test_a_live_event_subscriber_follows_the_failover_without_subscribing_again(sentinel_cluster):
    # (Imported here: the worker test above must run, and fail, on code without Sentinel support.)
    from channels_redis.pubsub import RedisPubSubChannelLayer

    from jobs.core.redis_connection import channel_layer_host

    async def scenario() -> tuple[Any, Any]:
        # Given a WebSocket's channel in a group of the channel layer, configured as the settings configure it
        host = channel_layer_host(sentinel_cluster.primary_url, sentinel_cluster.sentinels, MASTER_NAME)
        layer = RedisPubSubChannelLayer(hosts=[host], prefix="conveyor-sentinel-test")
        channel = await layer.new_channel()
        await layer.group_add("job", channel)
        try:
            await layer.group_send("job", {"type": "job.event", "n": 1})
            before = await asyncio.wait_for(layer.receive(channel), 10)
            # When the primary is killed and the replica promoted
            sentinel_cluster.kill_primary()
            await wait_async(lambda: sentinel_cluster.master_port() == sentinel_cluster.replica_port, 30)
            # Then an event sent afterwards still reaches the same channel (its subscription moved on).
            # Pub/sub keeps nothing for a subscriber that is reconnecting, so the event is sent
            # again until it arrives; the receive is never cancelled (channels_redis would
            # unsubscribe the channel).
            receiving = asyncio.ensure_future(layer.receive(channel))
            deadline = time.monotonic() + 20
            while not receiving.done():
                assert time.monotonic() < deadline, "the subscriber never heard from the new primary"
                try:
                    await layer.group_send("job", {"type": "job.event", "n": 2})
                except redis.ConnectionError:
                    pass  # the sender's own client still looking for the primary
                await asyncio.wait({receiving}, timeout=0.5)
            return before, receiving.result()
        finally:
            await layer.flush()

    # In a thread of its own: a browser test earlier in this process may have left its event loop running here.
    with ThreadPoolExecutor(max_workers=1) as thread:
        before, after = thread.submit(asyncio.run, scenario()).result()
    assert (before["n"], after["n"]) == (1, 2)


async def wait_async(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)
