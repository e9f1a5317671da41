"""Customer work and system work counted apart, from one place (``jobs.ops.stats``), by every reader.

A queue that ran a few customer exports also ran its canaries (about sixty an
hour), child jobs and schedules' jobs. The console, the weekly report, the
failure-rate alert, ``/metrics`` and the job-metrics dataset each count the
customer's exports alone, and show the rest apart.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from exports.models import Export
from exports.services import create_export, validate_export_request, write_export
from jobs.core.origin import JobOrigin, Origin, Via
from jobs.dispatch.services import build_job
from jobs.models import Job, JobStatus
from jobs.models.alert import Alert
from jobs.ops.alerts.evaluator import evaluate_alerts
from jobs.ops.reports import last_full_week, send_weekly_report
from jobs.ops.stats import roll_up
from tests.exports.helpers import read_csv
from tests.factories import UserFactory
from tests.webhooks import WebhookReceiver

CANARIES_AN_HOUR = 60


def _finished(jobs: list[Job], status: str, at: datetime, run_s: float) -> list[Job]:
    for job in jobs:
        job.status = status
        job.attempts = 1
        job.created_at = at - timedelta(seconds=run_s + 1)
        job.started_at = at - timedelta(seconds=run_s)
        job.finished_at = at
    return Job.objects.bulk_create(jobs)


def _exports(customer: Any, count: int) -> list[Job]:
    origin = Origin.of_user(customer, Via.API)
    return [
        build_job(job_type="csv-export", queue="csv-export", actor="x", arguments={}, owner=customer, origin=origin)
        for _ in range(count)
    ]


def an_hour_of_mixed_work(customer: Any, at: datetime, *, completed: int, failed: int) -> None:
    """Customer exports on csv-export, with the system work that shares its queue and the platform's."""
    _finished(_exports(customer, completed), JobStatus.COMPLETED, at, 2.0)
    parent = _finished(_exports(customer, failed), JobStatus.FAILED, at, 1.0)[0]
    canaries = [
        build_job(job_type="canary", queue="csv-export", actor="canary_csv_export", arguments={})
        for _ in range(CANARIES_AN_HOUR)
    ]
    _finished(canaries, JobStatus.COMPLETED, at, 0.01)
    # Children of a customer's job (the work its parent split), one of them failed
    children = [
        build_job(job_type="csv-export", queue="csv-export", actor="x", arguments={}, owner=customer, parent=parent)
        for _ in range(20)
    ]
    _finished(children[:19], JobStatus.COMPLETED, at, 0.5)
    _finished(children[19:], JobStatus.FAILED, at, 0.5)
    cleanup = [build_job(job_type="cleanup", queue="maintenance", actor="run_cleanup", arguments={})]
    _finished(cleanup, JobStatus.COMPLETED, at, 30.0)
    digest = build_job(
        job_type="email-digest", queue="email-sender", actor="x", arguments={}, origin=Origin.schedule("daily")
    )
    _finished([digest], JobStatus.COMPLETED, at, 3.0)
    origins = dict(
        Job.objects.values_list("type", "origin").filter(type__in=("canary", "cleanup", "email-digest")).distinct()
    )
    assert origins == {"canary": "canary", "cleanup": "maintenance", "email-digest": "schedule"}


@pytest.fixture
def admin_client(db: None) -> Client:
    client = Client()
    client.force_login(cast(Any, UserFactory(is_staff=True, is_superuser=True)))
    return client


@pytest.fixture
def slack(settings: Any, webhook: WebhookReceiver, clean_redis: None) -> WebhookReceiver:
    settings.SLACK_WEBHOOK_URL = webhook.url("/slack")
    settings.ALERT_WEBHOOK_BACKOFF_S = 0.01
    settings.ALERT_FAILURE_RATE_FOR_S = 0
    return webhook


def _failure_alerts(slack: WebhookReceiver) -> list[str]:
    return [text for text in slack.texts("/slack") if "*Failure rate*" in text and "csv-export" in text]


# -- the console -----------------------------------------------------------------------


def test_console_counts_customer_exports_and_shows_canaries_children_and_maintenance_apart(
    admin_client, user, clean_redis
):
    # Given an hour of 7 exports done and 3 failed, among 60 canaries, 20 children, a cleanup and a digest
    an_hour_of_mixed_work(user, timezone.now() - timedelta(minutes=2), completed=7, failed=3)
    roll_up()
    # When an operator opens the queue overview
    response = admin_client.get("/admin/queues/")
    assert response.status_code == 200
    # Then the csv-export row counts the customer's exports only: 3 of 10 failed is 30 %
    row = next(row for row in response.context["rows"] if row.name == "csv-export")
    assert (row.last_24h.completed, row.last_24h.failed, row.failure_rate) == (7, 3, "30.0%")
    assert row.avg_duration == "2.0 s"
    # And the system section shows the rest, each origin apart
    other = {work.origin: work.totals for work in response.context["other_work"]}
    assert (other["canary"].completed, other["canary"].failed) == (CANARIES_AN_HOUR, 0)
    assert (other["child"].completed, other["child"].failed) == (19, 1)
    assert (other["maintenance"].completed, other["schedule"].completed) == (1, 1)
    page = response.content.decode()
    assert 'id="system-work"' in page and 'id="work-canary"' in page and 'id="work-maintenance"' in page


# -- the weekly report ---------------------------------------------------------------------


def test_weekly_report_counts_customer_jobs_per_queue_and_system_work_in_its_own_table(user, settings):
    settings.SLACK_WEBHOOK_URL = ""
    week_start, week_end = last_full_week()
    an_hour_of_mixed_work(user, week_end - timedelta(hours=2), completed=7, failed=3)
    report = send_weekly_report(dry_run=True)
    assert report.rows["csv-export"]["jobs"] == 10
    assert report.rows["csv-export"]["success_rate"] == pytest.approx(0.7)
    assert report.rows["maintenance"]["jobs"] == 0 and report.rows["email-sender"]["jobs"] == 0
    assert report.other_work["canary"]["jobs"] == CANARIES_AN_HOUR
    assert report.other_work["child"]["jobs"] == 20
    assert report.other_work["maintenance"]["jobs"] == 1 and report.other_work["schedule"]["jobs"] == 1
    text = report.as_text()
    csv_line = next(line for line in text.splitlines() if line.startswith("csv-export"))
    assert csv_line.split()[1:3] == ["10", "70.0"]
    canary_line = next(line for line in text.splitlines() if line.startswith("canary"))
    assert canary_line.split()[1] == str(CANARIES_AN_HOUR)
    assert next(line for line in text.splitlines() if line.startswith("maintenance ")).split()[1] == "0"


# -- the failure-rate alert ----------------------------------------------------------------


def test_three_failed_of_ten_customer_jobs_is_below_the_floor_no_alert_but_the_console_shows_it(
    slack, user, admin_client, settings
):
    # Given 3 failed exports of 10 in the last hour, with a queue's canaries and children around them
    assert settings.ALERT_FAILURE_RATE_MIN_JOBS == 20
    an_hour_of_mixed_work(user, timezone.now() - timedelta(minutes=5), completed=7, failed=3)
    # When the alerts are evaluated (twice: a breach held for ALERT_FAILURE_RATE_FOR_S = 0 fires)
    evaluate_alerts()
    evaluate_alerts()
    # Then no failure-rate alert: 10 customer jobs are under ALERT_FAILURE_RATE_MIN_JOBS (canaries never count)
    assert _failure_alerts(slack) == []
    assert not Alert.objects.filter(rule="failure_rate").exists()
    # But the operator still sees the 3 failures and the 30 % on the console
    roll_up()
    row = next(row for row in admin_client.get("/admin/queues/").context["rows"] if row.name == "csv-export")
    assert (row.last_24h.failed, row.failure_rate) == (3, "30.0%")
    # And with a lower floor the same hour fires at 30 %, not at 4 of 90 (with the failed child)
    settings.ALERT_FAILURE_RATE_MIN_JOBS = 10
    evaluate_alerts()
    evaluate_alerts()
    (fired,) = _failure_alerts(slack)
    assert "30.0% of 10 customer jobs" in fired


def test_two_failed_of_twenty_five_customer_jobs_fires_though_canaries_would_dilute_it(slack, user):
    # Given 2 failed exports of 25 (8 %) among 60 canaries and 20 children: 3 of 105 (2.9 %) when mixed
    an_hour_of_mixed_work(user, timezone.now() - timedelta(minutes=5), completed=23, failed=2)
    evaluate_alerts()
    evaluate_alerts()
    (fired,) = _failure_alerts(slack)
    assert "8.0% of 25 customer jobs" in fired
    alert = Alert.objects.get(rule="failure_rate", subject="csv-export")
    assert alert.value == pytest.approx(0.08)


# -- /metrics ------------------------------------------------------------------------------


def test_metrics_label_finished_jobs_by_origin(settings, user, clean_redis):
    settings.METRICS_TOKEN = "metrics-test-token"
    settings.JOBS_STATS_BACKFILL_HOURS = 2
    an_hour_of_mixed_work(user, timezone.now() - timedelta(seconds=30), completed=7, failed=3)
    roll_up()  # the counters start at the first roll-up's seal line
    response = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer metrics-test-token")
    families = {family.name: family for family in text_string_to_metric_families(response.content.decode())}
    finished = {
        (sample.labels["origin"], sample.labels["status"]): sample.value
        for sample in families["conveyor_jobs_finished"].samples
        if sample.labels["queue"] == "csv-export"
    }
    assert finished[("customer", "completed")] == 7 and finished[("customer", "failed")] == 3
    assert finished[("canary", "completed")] == CANARIES_AN_HOUR
    assert (finished[("child", "completed")], finished[("child", "failed")]) == (19, 1)


# -- the job-metrics dataset ---------------------------------------------------------------


@pytest.mark.django_db(transaction=True)  # the export's child process reads committed rows
def test_job_metrics_dataset_has_a_row_per_queue_and_origin(settings, tmp_path, user):
    settings.MEDIA_ROOT = tmp_path
    staff = UserFactory(is_staff=True)
    at = timezone.now() - timedelta(minutes=5)
    an_hour_of_mixed_work(user, at, completed=7, failed=3)
    roll_up()  # the dataset reads the statistics' buckets, as the console does
    dataset, query = validate_export_request(
        staff,
        {"dataset": "job-metrics", "filters": {"finished_after": (at - timedelta(hours=1)).isoformat()}},
    )
    export = create_export(staff, dataset, query, "csv")
    Export.mark_running(str(export.id))
    write_export(str(export.id), f"exports/test-{export.id}.csv")
    header, rows = read_csv((tmp_path / f"exports/test-{export.id}.csv").read_bytes())
    assert header[:5] == ["queue", "origin", "jobs", "completed", "failed"]
    by_key = {(row[0], row[1]): row[2:5] for row in rows}
    assert by_key[("csv-export", JobOrigin.CUSTOMER)] == ["10", "7", "3"]
    assert by_key[("csv-export", JobOrigin.CANARY)] == [str(CANARIES_AN_HOUR), str(CANARIES_AN_HOUR), "0"]
    assert by_key[("csv-export", JobOrigin.CHILD)] == ["20", "19", "1"]
    assert by_key[("maintenance", JobOrigin.MAINTENANCE)] == ["1", "1", "0"]


@pytest.mark.django_db(transaction=True)
def test_jobs_dataset_gives_each_jobs_origin_and_filters_on_it(settings, tmp_path, user):
    settings.MEDIA_ROOT = tmp_path
    an_hour_of_mixed_work(user, timezone.now() - timedelta(minutes=5), completed=2, failed=2)
    dataset, query = validate_export_request(
        user, {"dataset": "jobs", "fields": ["type", "origin"], "filters": {"origin": ["customer"]}}
    )
    export = create_export(user, dataset, query, "csv")
    Export.mark_running(str(export.id))
    write_export(str(export.id), f"exports/test-{export.id}.csv")
    header, rows = read_csv((tmp_path / f"exports/test-{export.id}.csv").read_bytes())
    assert header == ["type", "origin"]
    # The customer's 4 exports; not the 20 children of one of them, though they are the customer's too
    assert rows == [["csv-export", "customer"]] * 4
    assert Job.objects.filter(owner=user, origin=JobOrigin.CHILD).count() == 20
