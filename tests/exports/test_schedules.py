"""The exports' recurring jobs through the real path: a schedule's "run now", the maintenance queue, a worker."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from importlib import import_module
from pathlib import Path

import pytest
from django.apps import apps as django_apps
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from exports.models import Export, ExportFormat, ExportStatus
from jobs.models import Job, JobStatus
from jobs.models.schedule import FireOutcome, Schedule
from jobs.ops.scheduling.firing import run_now
from jobs.ops.stats import roll_up
from tests.exports.helpers import JOB_METRICS_HEADER, export_path, read_csv
from tests.factories import UserFactory
from tests.jobs.helpers import wait_terminal


def _finished(queue: str, status: str, *, finished_days_ago: float, seconds: int) -> Job:
    finished = timezone.now() - timedelta(days=finished_days_ago)
    return Job.objects.create(
        type="report",
        queue=queue,
        actor="report",
        status=status,
        created_at=finished - timedelta(seconds=seconds + 1),
        started_at=finished - timedelta(seconds=seconds),
        finished_at=finished,
    )


def _weekly_analytics_schedule() -> Schedule:
    """The "weekly analytics" schedule as exports' data migration makes it (a transactional test starts empty)."""
    import_module("exports.migrations.0002_weekly_analytics_schedule").create_schedule(django_apps, None)
    return Schedule.objects.get(name="weekly analytics")


def _fire(schedule) -> Job:
    fired = run_now(schedule)
    assert fired is not None and fired.outcome == FireOutcome.ENQUEUED and fired.job is not None
    assert fired.job.queue == "maintenance"
    job = wait_terminal(fired.job, timeout=90)
    assert job.status == JobStatus.COMPLETED, job.error_message
    return job


@pytest.mark.slow
def test_weekly_analytics_schedule_exports_last_weeks_metrics_listed_for_staff(pools, media_root, staff, mail_server):
    # Given the default weekly analytics schedule, and jobs finished last week and outside it
    schedule = _weekly_analytics_schedule()
    assert (schedule.cron, schedule.job_type) == ("0 6 * * 1", "weekly-job-metrics")
    _finished("thumbnails", JobStatus.COMPLETED, finished_days_ago=3, seconds=2)
    _finished("thumbnails", JobStatus.COMPLETED, finished_days_ago=4, seconds=4)
    _finished("thumbnails", JobStatus.FAILED, finished_days_ago=5, seconds=6)
    _finished("email-sender", JobStatus.CANCELLED, finished_days_ago=2, seconds=1)
    _finished("thumbnails", JobStatus.COMPLETED, finished_days_ago=10, seconds=50)  # the week before
    _finished("email-sender", JobStatus.COMPLETED, finished_days_ago=0, seconds=50)  # this week
    roll_up()  # the scheduler's statistics roll-up, which the job-metrics dataset reads
    # (staff are emailed about it: tests/exports/test_weekly_email.py)
    pools("maintenance", env={"MEDIA_ROOT": str(media_root), **mail_server[1]})
    # When staff run it now from the schedule
    job = _fire(schedule)
    # Then its job wrote a CSV export of last week's per-queue metrics, for staff (no owner)
    export = Export.objects.get(id=job.result["export_id"])
    assert (export.dataset, export.format, export.status) == ("job-metrics", ExportFormat.CSV, ExportStatus.COMPLETED)
    assert export.owner is None and export.all_owners and export.job_id == job.id
    header, rows = read_csv(export_path(export).read_bytes())
    assert header == JOB_METRICS_HEADER
    # A row per queue and origin (these jobs are customer work)
    metrics = {(row[0], row[1]): [Decimal(value) if value else None for value in row[2:]] for row in rows}
    assert metrics == {
        ("email-sender", "customer"): [1, 0, 0, 1, 0, None, None],
        ("thumbnails", "customer"): [3, 2, 1, 0, 0, Decimal("0.6667"), Decimal(3)],  # completed jobs' mean
    }
    # And an operator finds it in the admin, and staff download it
    admin = Client()
    admin.force_login(UserFactory(is_staff=True, is_superuser=True))
    listing = admin.get("/admin/exports/export/")
    assert listing.status_code == 200 and str(export.id) in listing.content.decode()
    api = APIClient()
    api.force_authenticate(staff)
    download = api.get(f"/api/exports/{export.id}/download")
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == export_path(export).read_bytes()


@pytest.mark.slow
def test_monthly_cleanup_schedule_deletes_expired_export_files(pools, media_root, default_schedule, user):
    # Given the default monthly cleanup schedule, an expired export and a current one, both with files
    schedule = default_schedule("monthly cleanup")
    assert (schedule.cron, schedule.job_type) == ("0 0 1 * *", "cleanup")
    files = {}
    for name, expires in (("expired", timezone.now() - timedelta(days=1)), ("current", None)):
        relative = f"exports/{name}.csv"
        (media_root / "exports").mkdir(exist_ok=True)
        (media_root / relative).write_text("a,b\n1,2\n")
        export = Export.objects.create(
            owner=user, dataset="jobs", query_params={}, format=ExportFormat.CSV, status=ExportStatus.RUNNING
        )
        Export.mark_completed(str(export.id), file=relative, row_count=1, size_bytes=8)
        if expires is not None:
            Export.objects.filter(id=export.id).update(expires_at=expires)
        files[name] = (export, Path(media_root / relative))
    pools("maintenance", env={"MEDIA_ROOT": str(media_root)})
    # When staff run it now from the schedule
    job = _fire(schedule)
    # Then the expired file is gone and its export says so; the current one is untouched
    assert job.result["expired-exports"] == 1
    expired, expired_file = files["expired"]
    current, current_file = files["current"]
    expired.refresh_from_db()
    current.refresh_from_db()
    assert expired.status == ExportStatus.EXPIRED and not expired_file.exists()
    assert current.status == ExportStatus.COMPLETED and current_file.exists()
