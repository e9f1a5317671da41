"""Alerts: each rule fires once and resolves once, posted to a real HTTP server standing in for Slack.

Time is driven by the rules' duration settings (shortened to 0 unless a test
says otherwise) and by Job rows written with chosen timestamps.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from campaigns.models import CampaignStatus, Delivery, DeliveryStatus
from jobs.dispatch.canaries import send_canaries
from jobs.models import Job, JobStatus
from jobs.models.alert import Alert, AlertStatus
from jobs.ops.alerts.evaluator import evaluate_alerts
from tests.campaigns.helpers import campaign_for, users
from tests.webhooks import WebhookReceiver
from tests.workers import wait_for

RULE_DURATIONS = [
    "BACKLOG",
    "FAILURE_RATE",
    "NO_WORKER",
    "REDIS_MEMORY",
    "OCR_DURATION",
    "EMAIL_RATE",
    "EXPORT_TIMEOUT",
    "THUMBNAILS_DURATION",
]


@pytest.fixture
def slack(settings: Any, webhook: WebhookReceiver, clean_redis: None) -> WebhookReceiver:
    settings.SLACK_WEBHOOK_URL = webhook.url("/slack")
    settings.PAGER_WEBHOOK_URL = webhook.url("/pager")
    settings.ALERT_WEBHOOK_BACKOFF_S = 0.01
    for rule in RULE_DURATIONS:
        setattr(settings, f"ALERT_{rule}_FOR_S", 0)
    return webhook


def _messages(slack: WebhookReceiver, title: str, subject: str = "") -> tuple[list[str], list[str]]:
    """(fired, resolved) Slack messages of one rule (and subject, when given)."""
    texts = [text for text in slack.texts("/slack") if f"*{title}*" in text and subject in text]
    return [t for t in texts if "firing" in t], [t for t in texts if "resolved" in t]


def _evaluate(times: int = 2) -> None:
    """Evaluate more than once: a second evaluation must not repeat a message."""
    for _ in range(times):
        evaluate_alerts()


def _job(job_type: str, queue: str, status: str, **times: Any) -> Job:
    return Job.objects.create(type=job_type, queue=queue, actor="test", status=status, **times)


def _assert_fired_once(slack: WebhookReceiver, title: str, subject: str = "") -> None:
    fired, resolved = _messages(slack, title, subject)
    assert len(fired) == 1 and resolved == [], (fired, resolved)


def _assert_resolved_once(slack: WebhookReceiver, title: str, subject: str = "") -> None:
    fired, resolved = _messages(slack, title, subject)
    assert len(fired) == 1 and len(resolved) == 1, (fired, resolved)


@pytest.mark.slow
def test_backlog_alert_fires_once_and_resolves_when_a_worker_drains_the_queue(slack, settings, pools):
    # Given more jobs waiting on a queue than the threshold, and no worker
    settings.ALERT_BACKLOG_THRESHOLD = 2
    for _ in range(3):
        send_canaries(["thumbnails"])
    # When the rules are evaluated
    _evaluate()
    # Then one message fires, naming the queue
    _assert_fired_once(slack, "Queue backlog", "thumbnails")
    # When a worker drains the queue
    pools("thumbnails", threads=2)
    wait_for(lambda: Job.objects.filter(queue="thumbnails", status=JobStatus.COMPLETED).count() >= 4, 60)
    _evaluate()
    # Then one message resolves it
    _assert_resolved_once(slack, "Queue backlog", "thumbnails")


def test_backlog_alert_waits_for_its_duration_before_firing(slack, settings, transactional_db):
    settings.ALERT_BACKLOG_THRESHOLD = 0
    settings.ALERT_BACKLOG_FOR_S = 3600
    send_canaries(["csv-export"])
    _evaluate()
    assert Alert.objects.get(rule="backlog", subject="csv-export").status == AlertStatus.PENDING
    assert _messages(slack, "Queue backlog") == ([], [])
    # The breach has now lasted as long as the (shortened) duration
    settings.ALERT_BACKLOG_FOR_S = 0
    _evaluate()
    _assert_fired_once(slack, "Queue backlog", "csv-export")


def test_failure_rate_alert_fires_over_five_percent_and_resolves_under(slack, db):
    now = timezone.now()
    finished = {"created_at": now - timedelta(minutes=5), "started_at": now, "finished_at": now}
    for _ in range(18):
        _job("csv-export", "csv-export", JobStatus.COMPLETED, **finished)
    for _ in range(2):
        _job("csv-export", "csv-export", JobStatus.FAILED, **finished)
    # 2 of 20 failed: 10 %
    _evaluate()
    _assert_fired_once(slack, "Failure rate", "csv-export")
    for _ in range(30):
        _job("csv-export", "csv-export", JobStatus.COMPLETED, **finished)
    # 2 of 50: 4 %
    _evaluate()
    _assert_resolved_once(slack, "Failure rate", "csv-export")


@pytest.mark.slow
def test_no_live_worker_alert_pages_on_call_and_resolves_when_a_worker_consumes(slack, pools):
    _evaluate()
    _assert_fired_once(slack, "No live worker", "maintenance")
    pages = [post.json() for post in slack.posts("/pager") if post.json()["subject"] == "maintenance"]
    assert [page["event"] for page in pages] == ["fired"]
    # When a worker for the queue starts (its start-up canary proves it consuming)
    pools("maintenance", threads=1)
    wait_for(lambda: Job.objects.filter(type="canary", queue="maintenance", started_at__isnull=False).exists(), 30)
    _evaluate()
    _assert_resolved_once(slack, "No live worker", "maintenance")
    pages = [post.json() for post in slack.posts("/pager") if post.json()["subject"] == "maintenance"]
    assert [page["event"] for page in pages] == ["fired", "resolved"]
    # The queues still without a worker fired once each and stay firing
    _assert_fired_once(slack, "No live worker", "thumbnails")


def test_redis_memory_alert_fires_over_threshold_and_resolves_under(slack, settings, db):
    settings.ALERT_REDIS_MEMORY_THRESHOLD = 0.0  # any use at all is over it
    _evaluate()
    _assert_fired_once(slack, "Redis memory")
    settings.ALERT_REDIS_MEMORY_THRESHOLD = 0.99
    _evaluate()
    _assert_resolved_once(slack, "Redis memory")


def test_slow_ocr_alert_fires_while_a_document_runs_over_ten_minutes(slack, db):
    now = timezone.now()
    job = _job("pdf-ocr", "pdf-processing", JobStatus.ACTIVE, started_at=now - timedelta(minutes=11))
    _evaluate()
    _assert_fired_once(slack, "Slow OCR")
    # It finishes (still slow, within the lookback): the alert stays, no repeat
    Job.objects.filter(pk=job.pk).update(status=JobStatus.COMPLETED, finished_at=now)
    _evaluate()
    _assert_fired_once(slack, "Slow OCR")
    # Once it is out of the lookback window, the alert resolves
    Job.objects.filter(pk=job.pk).update(started_at=now - timedelta(hours=2), finished_at=now - timedelta(hours=1))
    _evaluate()
    _assert_resolved_once(slack, "Slow OCR")


def test_fast_ocr_raises_no_alert(slack, db):
    now = timezone.now()
    _job("pdf-ocr", "pdf-processing", JobStatus.COMPLETED, started_at=now - timedelta(minutes=9), finished_at=now)
    _evaluate()
    assert _messages(slack, "Slow OCR") == ([], [])


def test_email_rate_alert_fires_while_a_campaign_sends_slowly(slack, settings, db):
    settings.ALERT_EMAIL_RATE_THRESHOLD = 2
    campaign = campaign_for(users(3))
    campaign.status = CampaignStatus.SENDING
    campaign.save(update_fields=["status"])
    # Sending, nothing sent in the last minute
    _evaluate()
    _assert_fired_once(slack, "Slow email sending")
    # Two sent in the last minute: 2/min
    sent = list(Delivery.objects.filter(campaign=campaign).values_list("pk", flat=True)[:2])
    Delivery.objects.filter(pk__in=sent).update(status=DeliveryStatus.SENT, sent_at=timezone.now())
    _evaluate()
    _assert_resolved_once(slack, "Slow email sending")


def test_export_timeout_alert_fires_for_an_export_ended_by_its_time_limit(slack, db):
    now = timezone.now()
    job = _job(
        "csv-export",
        "csv-export",
        JobStatus.FAILED,
        started_at=now - timedelta(minutes=5),
        finished_at=now,
        error_message="timed out after 300 s",
    )
    _job("csv-export", "csv-export", JobStatus.FAILED, started_at=now, finished_at=now, error_message="bad filter")
    _evaluate()
    _assert_fired_once(slack, "Export timed out")
    assert str(job.pk) in _messages(slack, "Export timed out")[0][0]
    Job.objects.filter(pk=job.pk).update(finished_at=now - timedelta(hours=1))
    _evaluate()
    _assert_resolved_once(slack, "Export timed out")


def test_slow_thumbnails_alert_counts_from_request_to_done(slack, db):
    now = timezone.now()
    # Requested three minutes ago, still waiting for a worker
    job = _job("thumbnails", "thumbnails", JobStatus.QUEUED, created_at=now - timedelta(minutes=3))
    _evaluate()
    _assert_fired_once(slack, "Slow thumbnails")
    # Done long ago: out of the lookback window
    Job.objects.filter(pk=job.pk).update(
        status=JobStatus.COMPLETED,
        created_at=now - timedelta(hours=2),
        started_at=now - timedelta(hours=2),
        finished_at=now - timedelta(hours=1),
    )
    _evaluate()
    _assert_resolved_once(slack, "Slow thumbnails")


def test_a_failing_webhook_is_retried_and_never_breaks_the_evaluator(slack, settings, db):
    settings.ALERT_REDIS_MEMORY_THRESHOLD = 0.0
    # Slack answers 500 to every try of the first evaluation
    slack.fail_next = settings.ALERT_WEBHOOK_ATTEMPTS
    evaluation = evaluate_alerts()
    assert evaluation.unsent == 1
    assert slack.failed == settings.ALERT_WEBHOOK_ATTEMPTS
    # The message is owed: nothing was marked sent, and the rest of this evaluation's messages wait
    assert Alert.objects.filter(status=AlertStatus.FIRING, fire_sent_at__isnull=True).count() == Alert.objects.count()
    assert Alert.objects.filter(notify_failures=1).count() == 1
    # The next evaluation delivers every message, once
    _evaluate()
    texts = slack.texts("/slack")
    assert len(texts) == len(set(texts)) == Alert.objects.count()
    _assert_fired_once(slack, "Redis memory")


def test_alerts_are_listed_read_only_in_the_admin(slack, settings, admin_client):
    settings.ALERT_REDIS_MEMORY_THRESHOLD = 0.0
    _evaluate(1)
    alert = Alert.objects.get(rule="redis_memory")
    listing = admin_client.get("/admin/jobs/alert/")
    assert listing.status_code == 200 and "redis_memory" in listing.content.decode()
    assert admin_client.get("/admin/jobs/alert/add/").status_code == 403
    assert admin_client.post(f"/admin/jobs/alert/{alert.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Alert.objects.filter(pk=alert.pk).exists()
