"""The weekly analytics CSV reaches people: an email to active staff (real SMTP) and the Slack report's link."""

from __future__ import annotations

from datetime import timedelta
from importlib import import_module
from typing import Any

import pytest
from django.apps import apps as django_apps
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from exports.models import JOB_METRICS_DATASET, Export, ExportFormat, ExportStatus
from jobs.models import Job, JobStatus
from jobs.models.schedule import FireOutcome, Schedule
from jobs.ops.reports import last_full_week, send_weekly_report
from jobs.ops.scheduling.firing import run_now
from tests.exports.helpers import JOB_METRICS_HEADER, export_path, read_csv
from tests.factories import UserFactory
from tests.jobs.helpers import wait_terminal

SITE_URL = "https://conveyor.example.com"
User = get_user_model()


def _weekly_analytics_schedule() -> Schedule:
    import_module("exports.migrations.0002_weekly_analytics_schedule").create_schedule(django_apps, None)
    return Schedule.objects.get(name="weekly analytics")


def _last_week_job() -> None:
    finished = timezone.now() - timedelta(days=3)
    Job.objects.create(
        type="report",
        queue="thumbnails",
        actor="report",
        status=JobStatus.COMPLETED,
        created_at=finished - timedelta(seconds=3),
        started_at=finished - timedelta(seconds=2),
        finished_at=finished,
    )


def _people() -> dict[str, Any]:
    return {
        "staff": UserFactory(is_staff=True, email="ops@example.com"),
        "superuser": UserFactory(is_staff=True, is_superuser=True, email="root@example.com"),
        "former staff": UserFactory(is_staff=True, is_active=False, email="gone@example.com"),
        "staff without an address": UserFactory(is_staff=True, email=""),
        "customer": UserFactory(email="customer@example.com"),
    }


def _run_weekly_analytics() -> Job:
    fired = run_now(_weekly_analytics_schedule())
    assert fired is not None and fired.outcome == FireOutcome.ENQUEUED and fired.job is not None
    return wait_terminal(fired.job, timeout=90)


def _admin_page(export: Export) -> str:
    return f"{SITE_URL}/admin/exports/export/{export.id}/change/"


@pytest.mark.slow
def test_weekly_analytics_email_reaches_active_staff_with_the_csv_attached_and_no_one_else(
    pools, media_root, mail_server
):
    # Given staff, a former staff member, staff without an address and a customer, and a week of jobs
    mailbox, mail_env = mail_server
    _people()
    _last_week_job()
    pools("maintenance", env={"MEDIA_ROOT": str(media_root), "SITE_URL": SITE_URL, **mail_env})
    # When the weekly analytics schedule runs on a worker
    job = _run_weekly_analytics()
    # Then the export completed, and each active staff member with an address got one email
    assert job.status == JobStatus.COMPLETED, job.error_message
    export = Export.objects.get(id=job.result["export_id"])
    assert mailbox.recipients() == ["ops@example.com", "root@example.com"]
    # And the email carries the CSV itself and links its admin page
    message = mailbox.messages_to("ops@example.com")[0]
    assert message["To"] == "ops@example.com" and message["From"] == "conveyor@example.com"
    assert "Weekly analytics" in message["Subject"]
    attachments = list(message.iter_attachments())
    assert [part.get_filename() for part in attachments] == [export.download_name]
    content = attachments[0].get_content()
    content = content.encode() if isinstance(content, str) else content
    # (SMTP carries text with CRLF line ends)
    content = content.replace(b"\r\n", b"\n")
    assert content == export_path(export).read_bytes()
    assert read_csv(content)[0] == JOB_METRICS_HEADER
    body = message.get_body(preferencelist=("plain",))
    assert body is not None and _admin_page(export) in body.get_content()
    # And it is recorded as sent, so a retried job would not send it again
    assert Export.objects.get(id=export.id).staff_notified_at is not None
    assert job.result["staff_notified"] is True


@pytest.mark.slow
def test_a_weekly_analytics_csv_over_the_ceiling_is_linked_not_attached(pools, media_root, mail_server):
    # Given staff, and a ceiling the CSV is over (0 KB: never attach)
    mailbox, mail_env = mail_server
    _people()
    _last_week_job()
    env = {"MEDIA_ROOT": str(media_root), "SITE_URL": SITE_URL, "WEEKLY_ANALYTICS_ATTACH_MAX_KB": "0", **mail_env}
    pools("maintenance", env=env)
    # When the weekly analytics job runs
    job = _run_weekly_analytics()
    # Then staff get the admin page's address instead of the file
    assert job.status == JobStatus.COMPLETED, job.error_message
    export = Export.objects.get(id=job.result["export_id"])
    message = mailbox.messages_to("ops@example.com")[0]
    assert list(message.iter_attachments()) == []
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    assert "too large to attach" in body.get_content() and _admin_page(export) in body.get_content()
    assert "customer@example.com" not in mailbox.recipients()
    # And the linked page, opened by a superuser, offers the file
    admin = Client()
    admin.force_login(User.objects.get(email="root@example.com"))
    page = admin.get(_admin_page(export).removeprefix(SITE_URL))
    assert page.status_code == 200
    assert f'href="/api/exports/{export.id}/download"' in page.content.decode()


@pytest.mark.slow
def test_a_refused_email_is_sent_again_by_the_retry_without_a_second_export(pools, media_root, mail_server):
    # Given an SMTP server that refuses the first message (busy), and one staff member
    mailbox, mail_env = mail_server
    mailbox.refuse_next = 1
    UserFactory(is_staff=True, email="ops@example.com")
    _last_week_job()
    pools("maintenance", env={"MEDIA_ROOT": str(media_root), "SITE_URL": SITE_URL, **mail_env})
    # When the weekly analytics job runs
    job = _run_weekly_analytics()
    # Then its retry sent the email once, about the export its first attempt wrote
    assert job.status == JobStatus.COMPLETED, job.error_message
    assert job.attempts == 2
    assert mailbox.recipients() == ["ops@example.com"]
    assert Export.objects.filter(dataset=JOB_METRICS_DATASET).count() == 1


def test_weekly_slack_report_links_the_weeks_analytics_export(settings, db, webhook):
    # Given last week's analytics export, made on Monday morning, and an older one
    settings.SLACK_WEBHOOK_URL = webhook.url("/slack")
    settings.SITE_URL = SITE_URL
    start, end = last_full_week()

    def system_export(created_at: Any) -> Export:
        return Export.objects.create(
            owner=None,
            dataset=JOB_METRICS_DATASET,
            format=ExportFormat.CSV,
            status=ExportStatus.COMPLETED,
            all_owners=True,
            created_at=created_at,
        )

    system_export(start + timedelta(hours=6))
    this_week = system_export(end + timedelta(hours=6))
    # When the weekly report is sent
    send_weekly_report(now=end + timedelta(hours=7))
    # Then the Slack message links that export's admin page
    (text,) = webhook.texts("/slack")
    assert f"<{_admin_page(this_week)}|Weekly analytics CSV>" in text


def test_weekly_slack_report_without_an_analytics_export_has_no_link(settings, db, webhook):
    settings.SLACK_WEBHOOK_URL = webhook.url("/slack")
    start, end = last_full_week()
    send_weekly_report(now=end + timedelta(hours=7))
    (text,) = webhook.texts("/slack")
    assert "Weekly job report" in text and "Weekly analytics CSV" not in text
