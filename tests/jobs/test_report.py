"""The weekly report: its numbers match the Job rows; it goes to Slack (a real local HTTP server)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from importlib import import_module
from typing import Any

import pytest
from django.apps import apps as django_apps
from django.core.management import call_command
from django.db.models import Avg, DurationField, ExpressionWrapper, F

from campaigns.models import Campaign, CampaignStatus
from jobs.models import Job, JobStatus, Schedule
from jobs.ops.reports import last_full_week, send_weekly_report
from jobs.ops.scheduling.firing import validate_schedule
from jobs.ops.scheduling.triggers import next_fire_time
from tests.factories import EmailTemplateFactory
from tests.jobs.helpers import start, wait_terminal
from tests.webhooks import WebhookReceiver
from tests.workers import wait_for


@pytest.fixture
def slack(settings: Any, webhook: WebhookReceiver) -> WebhookReceiver:
    settings.SLACK_WEBHOOK_URL = webhook.url("/slack")
    settings.ALERT_WEBHOOK_BACKOFF_S = 0.01
    return webhook


def _finished(queue: str, status: str, run_s: float, at: Any) -> Job:
    return Job.objects.create(
        type=f"{queue}-job",
        queue=queue,
        actor="test",
        status=status,
        created_at=at - timedelta(seconds=run_s + 1),
        started_at=at - timedelta(seconds=run_s),
        finished_at=at,
    )


def _last_week_rows() -> tuple[Any, Any]:
    week_start, week_end = last_full_week()
    # The last hours of the week (the stats roll-up back-fills at least 8 days on a fresh database)
    late = week_end - timedelta(hours=2)
    for run_s in (2, 4, 6):
        _finished("pdf-processing", JobStatus.COMPLETED, run_s, late)
    _finished("pdf-processing", JobStatus.FAILED, 1, late)
    _finished("email-sender", JobStatus.COMPLETED, 10, late)
    # Outside the week: not counted
    _finished("pdf-processing", JobStatus.COMPLETED, 100, week_end + timedelta(minutes=30))
    template: Any = EmailTemplateFactory()
    Campaign.objects.create(
        name="last week",
        template=template,
        status=CampaignStatus.COMPLETED,
        total=10,
        sent=8,
        bounced=1,
        failed=1,
        finished_at=late,
    )
    return week_start, week_end


def _expected(queue: str, week_start: Any, week_end: Any) -> dict[str, Any]:
    rows = Job.objects.filter(queue=queue, finished_at__gte=week_start, finished_at__lt=week_end)
    completed = rows.filter(status=JobStatus.COMPLETED)
    duration = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
    average = completed.annotate(run=duration).aggregate(avg=Avg("run"))["avg"]
    return {
        "jobs": rows.count(),
        "success_rate": completed.count() / rows.count(),
        "avg_duration_s": average.total_seconds(),
    }


def test_weekly_report_numbers_match_the_job_rows_and_it_goes_to_slack(slack, db):
    # Given last week's job rows
    week_start, week_end = _last_week_rows()
    # When the report is sent
    report = send_weekly_report()
    # Then every queue is in it, and its numbers are the rows'
    assert set(report.rows) >= {"pdf-processing", "email-sender", "csv-export", "thumbnails", "maintenance"}
    for queue in ("pdf-processing", "email-sender"):
        expected = _expected(queue, week_start, week_end)
        row = report.rows[queue]
        assert row["jobs"] == expected["jobs"]
        assert row["success_rate"] == pytest.approx(expected["success_rate"])
        assert row["avg_duration_s"] == pytest.approx(expected["avg_duration_s"], abs=0.01)
    assert report.rows["pdf-processing"]["jobs"] == 4  # the job after the week is not counted
    assert report.rows["csv-export"]["jobs"] == 0
    # The email queue has its delivery rate (8 sent of 10), from the campaigns app's column
    assert report.extra["delivery"]["email-sender"] == "80.0 %"
    # And one Slack message holds the table
    (text,) = slack.texts("/slack")
    assert "Weekly job report" in text
    pdf_line = next(line for line in text.splitlines() if line.startswith("pdf-processing"))
    assert pdf_line.split()[1:] == ["4", "75.0", "%", "4.0", "s", "–"]
    email_line = next(line for line in text.splitlines() if line.startswith("email-sender"))
    assert email_line.split()[-2:] == ["80.0", "%"]


def test_weekly_report_command_dry_run_prints_and_posts_nothing(slack, db, capsys):
    _last_week_rows()
    call_command("weekly_report", "--dry-run")
    assert "pdf-processing" in capsys.readouterr().out
    assert slack.posts("/slack") == []


def test_weekly_report_runs_every_monday_by_default(db):
    # The data migration's function, on a table a transactional test may have emptied
    Schedule.objects.filter(name="weekly report").delete()
    import_module("jobs.migrations.0006_weekly_report_schedule").create_schedule(django_apps, None)
    schedule = Schedule.objects.get(name="weekly report")
    validate_schedule(schedule)
    assert (schedule.job_type, schedule.paused) == ("weekly-report", False)
    fire = next_fire_time(schedule, datetime(2026, 11, 25, 12, 0, tzinfo=UTC))
    assert fire == datetime(2026, 11, 30, 7, 0, tzinfo=UTC)  # the next Monday, 07:00 UTC


@pytest.mark.slow
def test_weekly_report_job_posts_from_a_worker(slack, pools, staff):
    pools("maintenance", threads=1, env={"SLACK_WEBHOOK_URL": slack.url("/slack")})
    job = wait_terminal(start("weekly-report", staff))
    assert job.status == JobStatus.COMPLETED
    wait_for(lambda: slack.texts("/slack"), 10, what="the report to reach Slack")
    assert "Weekly job report" in slack.texts("/slack")[0]
