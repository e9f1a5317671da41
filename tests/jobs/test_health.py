"""``/workers/health``: public, per queue, 503 when a queue has no live worker or no scheduler is live."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from jobs.dispatch.services import build_job, create_jobs
from jobs.models import JobStatus
from jobs.ops.health import _presence_entries, forget_cached_health_report, live_workers
from jobs.state import transitions
from jobs.worker.pausing import pause_queue, resume_queue
from tests.jobs.helpers import canary, wait_status, wait_terminal
from tests.jobs.test_scheduling import SchedulerRun
from tests.test_settings_modes import manage
from tests.workers import wait_for


def _health(client: APIClient):
    response = client.get("/workers/health")
    return response.status_code, response.json()


def _queue_ok(queue: str) -> bool:
    return bool(_health(APIClient())[1]["queues"][queue]["ok"])


@pytest.mark.slow
def test_health_is_503_until_every_queue_has_a_worker_and_a_scheduler_runs_and_200_after(pools):
    client = APIClient()  # anonymous: the endpoint is public
    status, body = _health(client)
    assert status == 503
    assert body["queues"]["maintenance"]["live_workers"] == 0
    assert body["schedulers"] == {"ok": False, "live": 0, "processes": []}
    started = [pools(queue, threads=1) for queue in body["queues"]]
    wait_for(lambda: all(queue["ok"] for queue in _health(client)[1]["queues"].values()), 30, what="live workers")
    # Every queue is served, but no scheduler runs: still 503
    assert _health(client)[0] == 503
    scheduler = SchedulerRun("health").start()
    try:
        wait_for(lambda: _health(client)[0] == 200, timeout=30, what="the scheduler to be reported")
        assert _health(client)[1]["schedulers"]["processes"][0]["pid"] == scheduler.proc.pid  # type: ignore[union-attr]
        assert wait_terminal(canary()).status == JobStatus.COMPLETED
        status, body = _health(client)
        assert body["ok"] is True and body["redis"] == "ok" and body["database"] == "ok"
        assert body["queues"]["maintenance"]["last_canary_latency_ms"] is not None
        # When the only worker of a queue stops, health turns 503 again
        stopped = started[0]
        stopped.stop()
        wait_for(lambda: _health(client)[0] == 503, timeout=30, what="the stopped queue to be reported")
        assert _health(client)[1]["queues"][stopped.queue]["live_workers"] == 0
        # And back to 200 when it returns (its start-up canary proves it consuming)
        pools(stopped.queue, threads=1)
        wait_for(lambda: _health(client)[0] == 200, timeout=30, what="the returned worker to be reported")
    finally:
        # And 503 once the scheduler has stopped (cleanly: it is no longer listed)
        assert scheduler.stop() == 0
    status, body = _health(client)
    assert status == 503 and body["schedulers"] == {"ok": False, "live": 0, "processes": []}


@pytest.mark.slow
def test_a_busy_worker_is_alive_and_a_stuck_one_is_not(pools, settings):
    # Given the only worker of a queue, proven consuming by its start-up canary
    pools("csv-export", threads=1)
    wait_for(lambda: _queue_ok("csv-export"), timeout=30, what="the worker to be live")
    settings.WORKER_CONSUMING_WITHIN_S = 5
    # When its one slot runs a long job that reports progress every 0.2 s
    busy = canary("csv-export", seconds=90, steps=450)
    wait_status(busy, JobStatus.ACTIVE)
    # Then, once its canary is older than the limit, it is alive because it is busy
    wait_for(lambda: [w["consuming"] for w in live_workers()] == ["busy"], timeout=30, what="alive as busy")
    # When its slot runs a job that reports no progress (a consumer that is stuck)
    transitions.request_cancel(busy)
    wait_status(busy, JobStatus.CANCELLED)
    stuck = canary("csv-export", seconds=40, steps=1)
    wait_status(stuck, JobStatus.ACTIVE)
    # Then the worker still heartbeats but is not alive: the queue is reported down
    wait_for(lambda: not _queue_ok("csv-export"), timeout=30, what="the stuck worker to be reported")
    assert _presence_entries(), "the worker still heartbeats"
    transitions.request_cancel(stuck)


def test_health_has_no_secrets(db, clean_redis):
    body = APIClient().get("/workers/health").content.decode()
    for secret in ("postgres://", "redis://", "SECRET", "password"):
        assert secret not in body


@pytest.mark.slow
def test_a_worker_of_a_paused_queue_stays_alive(pools, settings):
    # Given the live worker of a queue that is then paused (it stops consuming on purpose)
    pools("csv-export", threads=1)
    wait_for(lambda: _queue_ok("csv-export"), timeout=30, what="the worker to be live")
    pause_queue("csv-export")
    try:
        settings.WORKER_CONSUMING_WITHIN_S = 2
        # When its last canary is older than the limit, the worker still counts as alive
        wait_for(lambda: [w["consuming"] for w in live_workers()] == ["paused"], timeout=30, what="alive as paused")
        assert _queue_ok("csv-export")
    finally:
        resume_queue("csv-export")
    # Once resumed, a canary proves it consuming again
    assert wait_terminal(canary("csv-export")).status == JobStatus.COMPLETED
    assert [w["consuming"] for w in live_workers()] == ["canary"]


def _oldest_waiting_maintenance(client: APIClient) -> float:
    return _health(client)[1]["queues"]["maintenance"]["oldest_waiting_s"]


def test_health_report_is_kept_for_its_ttl_then_computed_again(db, clean_redis, settings):
    # Given a kept report (a long TTL here only so that a slow machine cannot straddle it)
    forget_cached_health_report()
    settings.HEALTH_CACHE_S = 30
    client = APIClient()
    with CaptureQueriesContext(connection) as first:
        assert _oldest_waiting_maintenance(client) == 0.0
    # When a second probe comes within the TTL, after something changed
    job = build_job(job_type="canary", queue="maintenance", actor="canary_maintenance", arguments={})
    job.created_at = timezone.now() - timedelta(minutes=10)
    create_jobs([job])
    with CaptureQueriesContext(connection) as second:
        kept = _oldest_waiting_maintenance(client)
    # Then it is answered from the kept report, without a query
    assert len(first) > 0 and len(second) == 0 and kept == 0.0
    # And once the TTL (the default 1 s) has passed, a probe sees the change
    settings.HEALTH_CACHE_S = 1.0
    wait_for(lambda: _oldest_waiting_maintenance(client) >= 600, timeout=10, what="the report to be computed again")
    forget_cached_health_report()


def test_a_health_cache_over_one_second_is_refused_at_start(tmp_path):
    result = manage("check", env={"HEALTH_CACHE_S": "5"}, var_dir=tmp_path)
    assert result.returncode != 0
    assert "HEALTH_CACHE_S must be between 0 and 1 (s), got 5.0" in result.stderr
