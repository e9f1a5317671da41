"""Each job records whose work it is (``Job.origin``): customer, child, schedule, canary, maintenance.

Started through the real doors (the API, a fan-out on real worker pools, a
schedule's fire, the canary sender, a maintenance run), and older rows back-filled
by migration 0014's own functions on rows shaped like the ones it finds.
"""

from __future__ import annotations

from datetime import timedelta
from importlib import import_module
from typing import Any

import pytest
from django.apps import apps as django_apps
from django.utils import timezone

from documents.models import DocumentStatus
from jobs.core.origin import JobOrigin, Via
from jobs.dispatch.canaries import send_canaries
from jobs.dispatch.fairness import SYSTEM_BUCKET, owner_bucket
from jobs.models import Job, JobStatus, Schedule
from jobs.models.stats import JobStatsBucket
from jobs.ops.scheduling.firing import run_now
from jobs.ops.stats import floor_hour, roll_up_hour
from tests.factories import DocumentFactory
from tests.jobs.helpers import reload, wait_status, wait_terminal
from tests.workers import wait_for

MIGRATION = import_module("jobs.migrations.0014_job_origin")


@pytest.fixture
def media_root(settings, tmp_path):
    root = tmp_path / "media"
    root.mkdir()
    settings.MEDIA_ROOT = root
    return root


def _posted(client, job_type: str, payload: dict) -> Job:
    response = client.post(f"/api/jobs/{job_type}", payload, format="json")
    assert response.status_code == 202, response.content
    return Job.objects.get(id=response.json()["job_id"])


def test_a_customers_api_request_is_customer_work_in_the_customers_bucket(user_api, user):
    job = _posted(user_api, "test-record-run", {"queue": "maintenance"})
    assert job.origin == JobOrigin.CUSTOMER
    assert owner_bucket(job) == f"u{user.pk}"


def test_a_canary_is_a_canary_whoever_starts_it(staff_api, db):
    # Staff through the API, and the platform's own sender
    by_staff = _posted(staff_api, "canary", {"queue": "thumbnails"})
    (sent,) = send_canaries(["csv-export"])
    assert (by_staff.origin, reload(sent).origin) == (JobOrigin.CANARY, JobOrigin.CANARY)
    # Fair dispatch keeps both in the shared system bucket, though staff own one
    assert by_staff.owner_id is not None
    assert owner_bucket(by_staff) == owner_bucket(sent) == SYSTEM_BUCKET


def test_maintenance_started_by_staff_is_maintenance_in_the_system_bucket(staff_api, staff):
    job = _posted(staff_api, "thumbnail-maintenance", {})
    assert job.origin == JobOrigin.MAINTENANCE and job.owner_id == staff.pk
    # The origin, not the owner, decides: maintenance waits with the platform's work
    assert owner_bucket(job) == SYSTEM_BUCKET


def test_a_schedules_fire_is_schedule_work_unless_its_type_is_maintenance_or_a_canary(db):
    digest_like = Schedule.objects.create(
        name="test record", cron="0 8 * * *", job_type="test-record-run", payload={"queue": "maintenance"}
    )
    cleanup = Schedule.objects.create(name="test cleanup", cron="0 0 1 * *", job_type="cleanup", payload={})
    canary = Schedule.objects.create(
        name="test canary", cron="* * * * *", job_type="canary", payload={"queue": "maintenance"}
    )
    origins = {}
    for schedule in (digest_like, cleanup, canary):
        fired = run_now(schedule)
        assert fired is not None and fired.job is not None
        assert fired.job.created_via == Via.SCHEDULE
        origins[schedule.job_type] = fired.job.origin
    assert origins == {
        "test-record-run": JobOrigin.SCHEDULE,
        "cleanup": JobOrigin.MAINTENANCE,
        "canary": JobOrigin.CANARY,
    }


@pytest.mark.slow
def test_fan_out_children_are_child_work_in_their_parents_owners_bucket(pools, user_api, user):
    pools("maintenance", threads=1)
    pools("thumbnails", threads=2)
    parent = wait_status(_posted(user_api, "test-fanout", {"children": 3}), JobStatus.COMPLETED, timeout=40)
    assert parent.origin == JobOrigin.CUSTOMER
    children = list(Job.objects.filter(parent=parent))
    assert len(children) == 3
    assert {child.origin for child in children} == {JobOrigin.CHILD}
    assert {owner_bucket(child) for child in children} == {f"u{user.pk}"}


@pytest.mark.slow
def test_jobs_that_a_maintenance_run_starts_are_maintenance_too(pools, staff_api, user, media_root):
    # Given a customer's ready document without thumbnails
    DocumentFactory(owner=user, status=DocumentStatus.READY, thumbnails={})
    # (maintenance leaves documents younger than THUMBNAIL_MAINTENANCE_MIN_AGE_S to their upload's own job)
    pools("thumbnails", threads=2, env={"MEDIA_ROOT": str(media_root), "THUMBNAIL_MAINTENANCE_MIN_AGE_S": "0"})
    # When thumbnail maintenance runs on a real worker
    maintenance = wait_terminal(_posted(staff_api, "thumbnail-maintenance", {}), timeout=60)
    assert maintenance.status == JobStatus.COMPLETED, maintenance.error_message
    (started_id,) = maintenance.result["jobs"]
    # Then the thumbnails job it started (and that job's children) are not counted as the customer's
    started = Job.objects.get(id=started_id)
    assert started.type == "thumbnails" and started.origin == JobOrigin.MAINTENANCE
    wait_for(lambda: reload(started).is_terminal, 60, what="the maintenance's thumbnails job")
    assert set(Job.objects.filter(parent=started).values_list("origin", flat=True)) <= {JobOrigin.CHILD}


# -- migration 0014 on rows shaped like the ones it finds ----------------------------


def _old_row(job_type: str, **fields) -> Job:
    """A job as it was before 0014: the new column holds its default, ``customer``, whatever the job was."""
    now = timezone.now() - timedelta(hours=2)
    defaults: dict[str, Any] = {"queue": "thumbnails", "actor": "x", "status": JobStatus.COMPLETED}
    defaults.update(created_at=now, started_at=now, finished_at=now + timedelta(seconds=1))
    return Job.objects.create(type=job_type, **{**defaults, **fields})


def test_backfill_gives_older_rows_their_origin(db):
    # Given rows written before the origin existed
    customer = _old_row("thumbnails", created_via=Via.API)
    child = _old_row("thumbnails-document", parent=customer, created_via=Via.API)
    scheduled = _old_row("email-digest", created_via=Via.SCHEDULE)
    canary = _old_row("canary", created_via=Via.SCHEDULE)
    cleanup = _old_row("cleanup", created_via=Via.SCHEDULE)
    repair = _old_row("thumbnail-maintenance", created_via=Via.API)
    child_of_schedule = _old_row("email-batch-part", parent=scheduled, created_via=Via.SCHEDULE)
    no_owner = _old_row("csv-export", created_via=Via.SYSTEM)
    assert set(Job.objects.values_list("origin", flat=True)) == {JobOrigin.CUSTOMER}
    # When the migration's back-fill runs
    MIGRATION.backfill_job_origin(django_apps, None)
    # Then each has the origin new code would have given it
    assert {job.type: reload(job).origin for job in (customer, scheduled, canary, cleanup, repair, no_owner)} == {
        "thumbnails": JobOrigin.CUSTOMER,
        "email-digest": JobOrigin.SCHEDULE,
        "canary": JobOrigin.CANARY,
        "cleanup": JobOrigin.MAINTENANCE,
        "thumbnail-maintenance": JobOrigin.MAINTENANCE,
        "csv-export": JobOrigin.CUSTOMER,
    }
    assert reload(child).origin == reload(child_of_schedule).origin == JobOrigin.CHILD


def test_backfill_counts_the_statistics_again_per_origin_and_keeps_pruned_hours(db):
    # Given an hour counted before 0014 (customer and canaries in one bucket) whose jobs are kept
    hour = floor_hour(timezone.now() - timedelta(hours=3))
    at = {"created_at": hour, "started_at": hour, "finished_at": hour + timedelta(minutes=10)}
    for _ in range(3):
        _old_row("csv-export", queue="csv-export", **at)
    _old_row("csv-export", queue="csv-export", **{**at, "status": JobStatus.FAILED})
    for _ in range(6):
        _old_row("canary", queue="csv-export", created_via=Via.SCHEDULE, **at)
    roll_up_hour(hour)  # today's code, before the back-fill: every row still reads "customer"
    assert JobStatsBucket.objects.filter(hour=hour, type="canary", origin=JobOrigin.CUSTOMER).exists()
    # and an older hour whose jobs the cleanup already deleted
    pruned = hour - timedelta(days=40)
    JobStatsBucket.objects.create(queue="csv-export", type="csv-export", hour=pruned, completed=9, failed=1)
    # When the migration back-fills the jobs, then the statistics
    MIGRATION.backfill_job_origin(django_apps, None)
    MIGRATION.recount_stats(django_apps, None)
    # Then the kept hour is counted per origin
    rows = {(row.type, row.origin): (row.completed, row.failed) for row in JobStatsBucket.objects.filter(hour=hour)}
    assert rows == {("csv-export", JobOrigin.CUSTOMER): (3, 1), ("canary", JobOrigin.CANARY): (6, 0)}
    # And the pruned hour keeps its figures (nothing is left to split them by)
    kept = JobStatsBucket.objects.get(hour=pruned)
    assert (kept.origin, kept.completed, kept.failed) == (JobOrigin.CUSTOMER, 9, 1)
