"""One clock: Redis's for liveness, delays and fire times, the database's for job rows (``jobs.core.clock``).

The fault test ``tests/faults/test_clock_skew.py`` runs workers whose clocks
are five minutes off; these tests put this process's clock off instead.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import apscheduler.executors.base
import apscheduler.schedulers.base
import dramatiq
import pytest
import redis
from apscheduler.schedulers.background import BackgroundScheduler
from django.utils import timezone

from jobs.core.clock import RedisClock, database_now
from jobs.models import Job, JobStatus
from jobs.ops.health import live_workers
from jobs.ops.scheduling.runner import use_shared_clock
from jobs.worker.middleware.presence import workers_key

SKEW_S = 300.0


class _RedisAhead:
    """A stand-in Redis client whose TIME is five minutes ahead of this host; it can be made to fail."""

    def __init__(self) -> None:
        self.down = False

    def time(self) -> tuple[int, int]:
        if self.down:
            raise redis.ConnectionError("Redis is down")
        now = time.time() + SKEW_S
        return int(now), int((now % 1) * 1e6)


def test_redis_clock_reads_redis_time_through_the_measured_offset() -> None:
    clock = RedisClock(_RedisAhead())
    assert abs(clock.now() - (time.time() + SKEW_S)) < 0.05
    assert abs(clock.now_ms() - (time.time() + SKEW_S) * 1000) < 50
    # A Redis time (an eta) as this host's clock reads it
    assert abs(clock.to_local_ms(clock.now_ms() + 2000) - (time.time() * 1000 + 2000)) < 50


def test_redis_clock_keeps_its_last_offset_while_redis_is_away_but_never_guesses_one() -> None:
    client = _RedisAhead()
    client.down = True
    clock = RedisClock(client, refresh_s=0)
    with pytest.raises(redis.ConnectionError):
        clock.now()
    client.down = False
    assert abs(clock.offset_s() - SKEW_S) < 0.05
    client.down = True
    assert abs(clock.offset_s() - SKEW_S) < 0.05


@pytest.fixture
def host_clock_ahead(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process's clock (time.time, timezone.now) runs five minutes ahead; Redis and PostgreSQL keep theirs."""
    broker: Any = dramatiq.get_broker()
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + SKEW_S)
    monkeypatch.setattr(timezone, "now", lambda: datetime.now(UTC) + timedelta(seconds=SKEW_S))
    broker.__dict__.pop("clock", None)  # measured again, against this clock
    yield
    broker.__dict__.pop("clock", None)


@pytest.mark.django_db
def test_health_on_a_host_whose_clock_is_ahead_still_sees_a_live_worker(clean_redis, host_clock_ahead) -> None:
    # Given a worker's presence entry stamped with Redis's time, and its canary picked up at the database's time
    broker: Any = dramatiq.get_broker()
    seconds, micros = broker.client.time()
    entry = {"queues": ["maintenance"], "threads": 1, "running": [], "heartbeat_at": seconds + micros / 1e6}
    broker.client.hset(workers_key(broker.namespace), "worker-1", json.dumps(entry))
    now = database_now()
    Job.objects.create(
        type="canary",
        queue="maintenance",
        actor="canary_maintenance",
        status=JobStatus.COMPLETED,
        created_at=now,
        started_at=now,
        finished_at=now,
    )
    # When health is asked on this host, five minutes ahead
    alive = live_workers()
    # Then the worker is live, proven consuming by its canary
    assert [(worker["id"], worker["consuming"]) for worker in alive] == [("worker-1", "canary")]


def test_scheduler_fires_by_redis_time_not_this_hosts(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given Redis's clock five minutes ahead of this host's (as if this host's were behind)
    broker: Any = dramatiq.get_broker()
    monkeypatch.setitem(broker.__dict__, "clock", RedisClock(_RedisAhead()))
    for module in (apscheduler.schedulers.base, apscheduler.executors.base):
        monkeypatch.setattr(module, "datetime", module.datetime)  # restored after the test
    use_shared_clock()
    # When a job is scheduled for half a second from now by Redis's clock (five minutes from now by this host's)
    fired = threading.Event()
    scheduler = BackgroundScheduler(timezone=UTC)
    scheduler.start()
    try:
        run_date = datetime.now(UTC) + timedelta(seconds=SKEW_S + 0.5)
        scheduler.add_job(fired.set, "date", run_date=run_date, misfire_grace_time=30)
        # Then it fires in about half a second
        assert fired.wait(timeout=10), "the job waited for this host's clock"
    finally:
        scheduler.shutdown(wait=False)
