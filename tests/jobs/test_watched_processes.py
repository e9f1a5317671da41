"""Workers and schedulers are watched: real ``runscheduler`` processes evaluate the alerts, real pools go
away, and a real HTTP server stands in for Slack and the pager.

The durations are the test-shortened settings (``ALERT_WORKER_OFFLINE_THRESHOLD``,
``ALERT_SCHEDULER_DOWN_THRESHOLD``, ``SCHEDULER_ALIVE_HEARTBEAT_S`` from
``config.settings_test``); every wait is on a condition.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import dramatiq
import pytest
from django.utils import timezone
from django_apscheduler.models import DjangoJob
from rest_framework.test import APIClient

from jobs.core.presence import read_entries, said_goodbye
from jobs.dispatch.canaries import send_canaries
from jobs.models import Job
from jobs.models.alert import Alert
from jobs.models.schedule import FireOutcome, Schedule, ScheduleFire
from jobs.ops.scheduling.presence import schedulers_key
from jobs.worker.middleware.presence import workers_key
from tests.jobs.test_scheduling import SchedulerRun, _canary_schedule, _fire_times_between, _fires
from tests.webhooks import WebhookReceiver
from tests.workers import wait_for

GONE_AFTER_S = 3
EVALUATE_EVERY_S = 0.5


@pytest.fixture
def schedulers(clean_redis, transactional_db):
    """Start ``runscheduler`` processes on an emptied schedule table; each still running is stopped at the end."""
    Schedule.objects.all().delete()
    DjangoJob.objects.all().delete()
    started: list[SchedulerRun] = []

    def start(label: str, **kwargs: Any) -> SchedulerRun:
        run = SchedulerRun(label, **kwargs).start()
        started.append(run)
        return run

    yield start
    for run in started:
        if run.proc is not None and run.proc.poll() is None:
            run.stop()


def alert_env(webhook: WebhookReceiver, **extra: str) -> dict[str, str]:
    """A scheduler evaluating every half second, its webhooks on ``webhook``; only the rules under test fire."""
    return {
        "SLACK_WEBHOOK_URL": webhook.url("/slack"),
        "PAGER_WEBHOOK_URL": webhook.url("/pager"),
        "ALERTS_EVALUATE_INTERVAL_S": str(EVALUATE_EVERY_S),
        "ALERT_WEBHOOK_ATTEMPTS": "1",
        "ALERT_WEBHOOK_BACKOFF_S": "0.01",
        # Slack is down for many evaluations in these tests: its messages stay owed meanwhile.
        "ALERT_NOTIFY_MAX_EVALUATIONS": "100000",
        "ALERT_WORKER_OFFLINE_THRESHOLD": str(GONE_AFTER_S),
        "ALERT_SCHEDULER_DOWN_THRESHOLD": str(GONE_AFTER_S),
        # The queues nobody serves in a test (every queue but the one under test) stay pending.
        "ALERT_NO_WORKER_FOR_S": "3600",
        "ALERT_BACKLOG_FOR_S": "3600",
        **extra,
    }


def _broker() -> Any:
    return dramatiq.get_broker()


def _pages(webhook: WebhookReceiver, rule: str) -> list[dict[str, Any]]:
    return [post.json() for post in webhook.posts("/pager") if post.json()["rule"] == rule]


def _slack(webhook: WebhookReceiver, title: str, event: str = "firing") -> list[str]:
    return [text for text in webhook.texts("/slack") if f"*{title}*" in text and event in text]


def _evaluated_after(rule: str, redis_time: float) -> bool:
    """Whether a scheduler claimed (and so measured) ``rule`` in a window starting after ``redis_time``."""
    broker = _broker()
    window = int(redis_time // EVALUATE_EVERY_S) + 1
    now_window = int(float(broker.clock.now()) // EVALUATE_EVERY_S)
    keys = [f"{broker.namespace}:__alerts__:{rule}:{index}" for index in range(window, now_window + 1)]
    return bool(keys) and any(broker.client.exists(key) for key in keys)


def _health() -> tuple[int, dict[str, Any]]:
    response = APIClient().get("/workers/health")
    return response.status_code, response.json()


@pytest.mark.slow
def test_a_killed_worker_pages_while_slack_is_down_and_a_cleanly_stopped_one_pages_no_one(pools, schedulers, webhook):
    # Given two workers of one queue, a scheduler evaluating alerts, and Slack answering 500
    webhook.down_paths.add("/slack")
    killed_pool, stopped_pool = pools("maintenance"), pools("maintenance")
    key = workers_key(_broker().namespace)
    wait_for(lambda: len(read_entries(_broker().client, key)) == 2, 30, 0.1, "both workers to announce themselves")
    by_pid = {int(entry.pid): entry for entry in read_entries(_broker().client, key)}
    killed = by_pid[killed_pool.worker_processes()[0].pid]
    stopped = by_pid[stopped_pool.worker_processes()[0].pid]
    schedulers("alerts", duties=True, env=alert_env(webhook))

    # When one is killed (-9) and the other stopped cleanly (SIGTERM, as a deploy does)
    killed_pool.kill_worker()
    stopped_pool.terminate()
    stopped_pool.wait(60)
    wait_for(lambda: stopped.id in said_goodbye(_broker().client, key), 10, 0.1, "the stopped worker's goodbye")
    gone_at = float(_broker().clock.now())

    # Then the on-call engineer is paged for the killed one, although Slack is down
    wait_for(lambda: _pages(webhook, "worker_offline"), 60, 0.2, "the page")
    assert webhook.texts("/slack") == []
    # And once both have been gone past the limit and the rule measured twice more, still only for that one
    wait_for(lambda: _evaluated_after("worker_offline", gone_at + GONE_AFTER_S), 60, 0.2, "a later evaluation")
    measured_at = float(_broker().clock.now())
    wait_for(lambda: _evaluated_after("worker_offline", measured_at), 60, 0.2, "another evaluation")
    pages = _pages(webhook, "worker_offline")
    assert [page["event"] for page in pages] == ["fired"]
    assert f":{killed.pid} " in pages[0]["subject"] and killed.id[:8] in pages[0]["subject"]
    assert not Alert.objects.filter(rule="worker_offline", subject__contains=f":{stopped.pid} ").exists()

    # When Slack is back, it is told once, and nobody is paged again
    webhook.down_paths.clear()
    wait_for(lambda: _slack(webhook, "Worker offline"), 60, 0.2, "the Slack message")
    [message] = _slack(webhook, "Worker offline")
    assert f":{killed.pid} " in message and "did not stop cleanly" in message
    assert len(_pages(webhook, "worker_offline")) == 1


@pytest.mark.slow
def test_two_schedulers_one_killed_the_other_fires_each_schedule_and_each_alert_once(pools, schedulers, webhook):
    # Given a schedule firing every 2 seconds, a worker for its jobs, two alerts that hold throughout
    # (Redis memory over a threshold of 0; a backlog of 3 on a queue nobody serves, to be held 2 s)
    # and two schedulers evaluating every half second
    pools("maintenance")
    schedule = _canary_schedule()
    for _ in range(3):
        send_canaries(["csv-export"])
    env = alert_env(
        webhook,
        ALERT_REDIS_MEMORY_THRESHOLD="0",
        ALERT_REDIS_MEMORY_FOR_S="0",
        ALERT_BACKLOG_THRESHOLD="2",
        ALERT_BACKLOG_FOR_S="2",
    )
    first, second = schedulers("a", duties=True, env=env), schedulers("b", duties=True, env=env)
    wait_for(lambda: _slack(webhook, "Redis memory"), 60, 0.2, "the Redis memory alert")
    wait_for(lambda: _slack(webhook, "Queue backlog"), 60, 0.2, "the sustained backlog alert")
    wait_for(lambda: len(_fires(schedule)) >= 3, 60, 0.2, "three fires")

    # When one is killed (-9: no goodbye)
    assert first.proc is not None and second.proc is not None
    first.kill()
    killed_at = timezone.now()

    # Then the other raises the scheduler-down alert about it
    wait_for(lambda: _slack(webhook, "Scheduler down"), 60, 0.2, "the scheduler-down alert")
    # And keeps firing the schedule
    wait_for(
        lambda: len([fire for fire in _fires(schedule) if fire.fire_time > killed_at]) >= 3, 60, 0.2, "later fires"
    )
    assert second.stop() == 0

    # Each alert fired once, though two schedulers evaluated it
    assert len(_slack(webhook, "Redis memory")) == 1
    [backlog] = _slack(webhook, "Queue backlog")
    assert "csv-export" in backlog
    [down] = _slack(webhook, "Scheduler down")
    assert f":{first.proc.pid} " in down
    assert Alert.objects.filter(rule="scheduler_down").count() == 1
    # The stopped one said goodbye: no alert about it
    assert not Alert.objects.filter(rule="scheduler_down", subject__contains=f":{second.proc.pid} ").exists()
    # Each fire time fired once, none left out, each with one job, the later ones by the survivor
    fires = _fires(schedule)
    times = [fire.fire_time for fire in fires]
    assert len(times) == len(set(times))
    assert times == _fire_times_between(schedule, times[0] - timedelta(microseconds=1), times[-1])
    assert all(fire.outcome in (FireOutcome.ENQUEUED, FireOutcome.SKIPPED) for fire in fires)
    enqueued = [fire for fire in fires if fire.outcome == FireOutcome.ENQUEUED]
    assert len({fire.job_id for fire in enqueued}) == len(enqueued)
    assert Job.objects.filter(id__in=[fire.job_id for fire in enqueued]).count() == len(enqueued)
    later = [fire for fire in fires if fire.created_at > killed_at + timedelta(seconds=1)]
    assert later and all(fire.fired_by.endswith(f":{second.proc.pid}") for fire in later)
    assert ScheduleFire.objects.filter(schedule=schedule).count() == len(fires)


@pytest.mark.slow
def test_with_every_scheduler_killed_health_reports_no_live_scheduler(schedulers, settings):
    # Given two schedulers beating, and a third stopped cleanly
    first, second, stopped = schedulers("a"), schedulers("b"), schedulers("c")
    assert first.proc is not None and second.proc is not None and stopped.proc is not None
    wait_for(lambda: _health()[1]["schedulers"]["live"] == 3, 30, 0.1, "three live schedulers")
    assert stopped.stop() == 0
    status, body = _health()
    pids = {process["pid"] for process in body["schedulers"]["processes"]}
    assert pids == {first.proc.pid, second.proc.pid}
    assert body["schedulers"]["ok"] is True
    # When every scheduler is killed (no goodbye: alerts cannot run, and cannot say so themselves)
    first.kill()
    second.kill()
    # Then, within the heartbeat timeout, /workers/health says no scheduler is live: 503, schedulers.ok false
    wait_for(lambda: not _health()[1]["schedulers"]["ok"], settings.SCHEDULER_ALIVE_HEARTBEAT_S * 10, 0.1, "down")
    status, body = _health()
    assert status == 503 and body["ok"] is False
    assert body["schedulers"]["live"] == 0
    processes = {process["pid"]: process for process in body["schedulers"]["processes"]}
    assert set(processes) == {first.proc.pid, second.proc.pid}
    assert all(not process["live"] for process in processes.values())
    assert all(process["last_beat_s_ago"] > settings.SCHEDULER_ALIVE_HEARTBEAT_S for process in processes.values())
    # And /metrics' gauge, which Prometheus' ConveyorNoScheduler reads, is 0
    settings.METRICS_TOKEN = "watch-test-token"
    metrics = APIClient().get("/metrics", HTTP_AUTHORIZATION="Bearer watch-test-token").content.decode()
    assert "\nconveyor_schedulers_live 0.0\n" in metrics
    # (the stopped one's goodbye is on record, so no alert calls it down)
    assert len(said_goodbye(_broker().client, schedulers_key(_broker().namespace))) == 1
