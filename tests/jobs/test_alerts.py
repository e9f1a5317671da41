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
from jobs.ops.alerts.rules import all_rules
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
    "WORKER_OFFLINE",
    "SCHEDULER_DOWN",
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


def test_slow_thumbnails_alert_times_each_document_not_the_batch(slack, db):
    now = timezone.now()
    # A batch requested three minutes ago, still running, each of its documents quick so far
    batch = _job("thumbnails", "thumbnails", JobStatus.ACTIVE, created_at=now - timedelta(minutes=3), started_at=now)
    _job(
        "thumbnails-document",
        "thumbnails",
        JobStatus.COMPLETED,
        arguments={"document_id": "quick-one"},
        started_at=now - timedelta(seconds=20),
        finished_at=now - timedelta(seconds=15),
    )
    _evaluate()
    # The batch's length alone fires nothing
    assert _messages(slack, "Slow thumbnails") == ([], [])
    # One of its documents has been rendering for three minutes
    slow = _job(
        "thumbnails-document",
        "thumbnails",
        JobStatus.ACTIVE,
        arguments={"document_id": "slow-one"},
        started_at=now - timedelta(minutes=3),
    )
    _evaluate()
    _assert_fired_once(slack, "Slow thumbnails")
    fired = _messages(slack, "Slow thumbnails")[0][0]
    assert "document slow-one" in fired and "quick-one" not in fired, fired
    # It finished long ago: out of the lookback window, the alert resolves
    Job.objects.filter(pk=slow.pk).update(
        status=JobStatus.COMPLETED, started_at=now - timedelta(hours=2), finished_at=now - timedelta(hours=1)
    )
    Job.objects.filter(pk=batch.pk).update(status=JobStatus.COMPLETED, finished_at=now)
    _evaluate()
    _assert_resolved_once(slack, "Slow thumbnails")


def test_the_pager_is_paged_while_slack_answers_500_and_slack_is_told_once_it_is_back(slack, settings, db):
    # Given Slack down (500 to every post) and a paging rule breached: no worker on any queue
    slack.down_paths.add("/slack")
    _evaluate()
    # Then the on-call engineer is paged at once, once per alert, though no Slack post went through
    pages = [post.json() for post in slack.posts("/pager")]
    assert pages and {page["event"] for page in pages} == {"fired"}
    assert len(pages) == len({page["subject"] for page in pages}) == Alert.objects.filter(rule="no_worker").count()
    assert slack.texts("/slack") == []
    assert Alert.objects.filter(rule="no_worker", page_sent_at__isnull=False, fire_sent_at__isnull=True).count() == len(
        pages
    )
    # When Slack is back
    slack.down_paths.clear()
    _evaluate()
    # Then Slack gets each message once, and nobody is paged a second time
    _assert_fired_once(slack, "No live worker", "maintenance")
    assert len(slack.posts("/pager")) == len(pages)


def test_slack_is_told_while_the_pager_answers_500(slack, settings, db):
    slack.down_paths.add("/pager")
    _evaluate()
    _assert_fired_once(slack, "No live worker", "maintenance")
    assert slack.posts("/pager") == []
    assert Alert.objects.filter(rule="no_worker", page_failures__gt=0).exists()
    slack.down_paths.clear()
    _evaluate()
    pages = [post.json() for post in slack.posts("/pager") if post.json()["subject"] == "maintenance"]
    assert [page["event"] for page in pages] == ["fired"]


@pytest.mark.slow
def test_a_backlog_spike_that_falls_back_before_its_duration_never_fires(slack, settings, pools):
    # Given a backlog rule that wants the breach held for an hour
    settings.ALERT_BACKLOG_THRESHOLD = 2
    settings.ALERT_BACKLOG_FOR_S = 3600
    for _ in range(3):
        send_canaries(["thumbnails"])
    _evaluate(1)
    spike = Alert.objects.get(rule="backlog", subject="thumbnails")
    assert spike.status == AlertStatus.PENDING
    # When a worker drains the queue before the duration is up, and an evaluation sees it under
    pools("thumbnails", threads=2)
    wait_for(lambda: Job.objects.filter(queue="thumbnails", status=JobStatus.COMPLETED).count() >= 4, 60)
    _evaluate(1)
    # Then the pending breach is gone: a later breach counts its duration from its own start
    assert not Alert.objects.filter(rule="backlog").exists()
    assert _messages(slack, "Queue backlog") == ([], [])


def test_a_backlog_not_seen_for_longer_than_the_evaluations_gap_starts_its_duration_again(
    slack, settings, transactional_db
):
    # Given a backlog breach seen pending for long enough to fire...
    settings.ALERT_BACKLOG_THRESHOLD = 0
    settings.ALERT_BACKLOG_FOR_S = 600
    settings.ALERTS_EVALUATE_INTERVAL_S = 60
    send_canaries(["csv-export"])
    _evaluate(1)
    long_ago = timezone.now() - timedelta(minutes=11)
    # ...but by two samples eleven minutes apart: no evaluation looked in between (every scheduler was down)
    Alert.objects.filter(rule="backlog").update(since=long_ago, updated_at=long_ago)
    _evaluate(1)
    # Then it does not fire: its duration starts again from this sample
    alert = Alert.objects.get(rule="backlog", subject="csv-export")
    assert alert.status == AlertStatus.PENDING and alert.since > long_ago + timedelta(minutes=10)
    assert _messages(slack, "Queue backlog") == ([], [])
    # Whereas sampled all along (the last sample a minute ago), the same breach fires
    minute_ago = timezone.now() - timedelta(minutes=1)
    Alert.objects.filter(rule="backlog").update(since=long_ago, updated_at=minute_ago)
    _evaluate(1)
    _assert_fired_once(slack, "Queue backlog", "csv-export")


def test_each_rule_is_measured_once_per_window_by_whichever_scheduler_claims_it(slack, settings, db):
    settings.ALERTS_EVALUATE_INTERVAL_S = 10**9  # one window for the whole test
    first = evaluate_alerts(once_per_window=True)
    second = evaluate_alerts(once_per_window=True)
    assert first.claimed_elsewhere == [] and "backlog" in second.claimed_elsewhere
    assert sorted(second.claimed_elsewhere) == sorted(rule.key for rule in all_rules())


def test_a_failing_webhook_is_retried_and_never_breaks_the_evaluator(slack, settings, db):
    settings.ALERT_REDIS_MEMORY_THRESHOLD = 0.0
    settings.PAGER_WEBHOOK_URL = ""  # Slack alone here (the pager, posted first, has its own tests)
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
