"""Each job records its origin, and the hourly statistics are kept per origin.

Older rows get theirs from what they recorded (``backfill_job_origin``); the
statistics of the hours whose jobs are all still in the table are counted
again per origin (``recount_stats``). Hours before the statistics' recount
horizon (``jobs.ops.stats.recount_horizon``: ``JOBS_RETENTION_DAYS`` ago plus
an hour, as the monthly cleanup deletes jobs that finished before the
retention cut-off, and their children with them) keep their buckets, counted
as customer work as they always were: their jobs may be gone, so nothing can
split them.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations, models

ORIGIN_CHOICES = [
    ("customer", "customer request"),
    ("child", "child of another job"),
    ("schedule", "schedule"),
    ("canary", "canary"),
    ("maintenance", "maintenance"),
]
#: The platform's own types of each origin; the registry adds the domain apps' (thumbnail maintenance, ...).
CANARY_TYPES = {"canary"}
MAINTENANCE_TYPES = {"cleanup", "weekly-report"}


def _registered(origin: str) -> set[str]:
    # The job types the apps register now: the registry is filled in ready(), before migrations run.
    from jobs.core.origin import JobOrigin
    from jobs.dispatch.registry import types_of_origin

    return set(types_of_origin(JobOrigin(origin)))


def backfill_job_origin(apps: Any, schema_editor: Any) -> None:
    """Set each older job's origin once, with ``origin_for``'s precedence: child, canary, maintenance, schedule.

    Every row starts as ``customer`` (the column's default); each UPDATE below
    writes only the rows of its rule and no later rule's, so a row is rewritten
    at most once.
    """
    job = apps.get_model("jobs", "Job")
    canary = CANARY_TYPES | _registered("canary")
    maintenance = (MAINTENANCE_TYPES | _registered("maintenance")) - canary
    top_level = job.objects.filter(parent__isnull=True)
    job.objects.filter(parent__isnull=False).update(origin="child")
    top_level.filter(type__in=canary).update(origin="canary")
    top_level.filter(type__in=maintenance).update(origin="maintenance")
    top_level.filter(created_via="schedule").exclude(type__in=canary | maintenance).update(origin="schedule")


def recount_stats(apps: Any, schema_editor: Any) -> None:
    """Count again, per origin, every hour of the statistics whose jobs are all still in the table.

    The cleanup deletes jobs that finished before ``JOBS_RETENTION_DAYS`` ago
    (children with their parent, which may have finished a little after it),
    so every hour from ``recount_horizon()`` on still has all its jobs: the
    same line the roll-up never recounts behind, which keeps ``/metrics``'
    counters from dropping.
    """
    from jobs.ops.stats import hour_buckets, recount_horizon

    job = apps.get_model("jobs", "Job")
    bucket = apps.get_model("jobs", "JobStatsBucket")
    cutoff = recount_horizon()
    hours = bucket.objects.filter(hour__gte=cutoff).values_list("hour", flat=True).distinct()
    for hour in sorted(set(hours)):
        bucket.objects.filter(hour=hour).delete()
        bucket.objects.bulk_create(hour_buckets(hour, job, bucket, carry_model=None))


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0013_share_weights"),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="jobstatsbucket",
            name="job_stats_bucket_unique",
        ),
        # db_default: on PostgreSQL the column is added without rewriting the table.
        migrations.AddField(
            model_name="job",
            name="origin",
            field=models.CharField(choices=ORIGIN_CHOICES, db_default="customer", default="customer", max_length=16),
        ),
        migrations.AddField(
            model_name="jobstatsbucket",
            name="origin",
            field=models.CharField(choices=ORIGIN_CHOICES, default="customer", max_length=16),
        ),
        migrations.AddConstraint(
            model_name="jobstatsbucket",
            constraint=models.UniqueConstraint(
                fields=("hour", "queue", "type", "origin"), name="job_stats_bucket_unique_origin"
            ),
        ),
        migrations.RunPython(backfill_job_origin, migrations.RunPython.noop, elidable=True),
        migrations.RunPython(recount_stats, migrations.RunPython.noop, elidable=True),
    ]
