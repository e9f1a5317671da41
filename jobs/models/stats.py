"""Hourly roll-ups of finished jobs: what the console reads instead of the Job table."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import models
from django.db.models import QuerySet
from django.utils import timezone

from jobs.core.origin import JobOrigin


class JobStatsBucket(models.Model):
    """The jobs of one queue, type and origin that finished in one UTC hour.

    Written only by ``jobs.ops.stats.roll_up_hour``, which recomputes a whole hour
    from the Job rows, so re-running it never counts a job twice.
    ``duration_histogram`` counts completed jobs per ``jobs.ops.stats.DURATION_BOUNDS_S``
    slot (the last slot is everything slower); the 95th percentile is read from it.
    """

    queue = models.CharField(max_length=64)
    type = models.CharField(max_length=64)
    #: Customer work is counted apart from children, schedules, canaries and maintenance.
    origin = models.CharField(max_length=16, choices=JobOrigin.choices, default=JobOrigin.CUSTOMER)
    hour = models.DateTimeField(help_text="Start of the UTC hour (finished_at of the jobs counted).")
    completed = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    cancelled = models.PositiveIntegerField(default=0)
    retried = models.PositiveIntegerField(default=0, help_text="Finished jobs that needed more than one attempt.")
    duration_sum_s = models.FloatField(default=0.0, help_text="Sum of the completed jobs' run times.")
    duration_count = models.PositiveIntegerField(default=0)
    duration_histogram = models.JSONField(default=list)
    computed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["hour", "queue", "type", "origin"], name="job_stats_bucket_unique_origin")
        ]

    def __str__(self) -> str:
        return f"{self.queue}/{self.type}/{self.origin} {self.hour:%Y-%m-%d %H}:00"


#: The roll-up's row in StatsWatermark.
ROLLUP = "job-stats"


class StatsWatermark(models.Model):
    """Up to which hour the roll-up has run (one row); the next run starts an hour before it."""

    name = models.CharField(max_length=32, primary_key=True)
    rolled_until = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name}: {self.rolled_until}"


class JobStatsCarry(models.Model):
    """A finished job taken out of the Job table before its hour was sealed: its figures, kept for the roll-up.

    The roll-up counts an unsealed hour from the Job rows that finished in it,
    and ``/metrics`` counts the hours since the seal line from the same rows.
    A staff delete, or a retry (which clears ``finished_at``), would take a job
    out of both, and a counter would go down by one. ``carry`` copies such a
    job's counted fields here in the caller's transaction, and the roll-up and
    the live count read these rows with the Job rows (``jobs.ops.stats``).
    Jobs already sealed are not carried: their buckets never change again.
    """

    queue = models.CharField(max_length=64)
    type = models.CharField(max_length=64)
    origin = models.CharField(max_length=16, choices=JobOrigin.choices, default=JobOrigin.CUSTOMER)
    status = models.CharField(max_length=16)
    attempts = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(db_index=True)
    job_id = models.UUIDField(help_text="The job it was (deleted, or finished again since).")
    carried_at = models.DateTimeField(default=timezone.now)

    _COUNTED = ("queue", "type", "origin", "status", "attempts", "started_at", "finished_at")

    def __str__(self) -> str:
        return f"{self.queue}/{self.type} {self.status} at {self.finished_at:%Y-%m-%d %H:%M}"

    @classmethod
    def carry(cls, jobs: QuerySet[Any]) -> int:
        """Keep the figures of ``jobs`` that finished after the seal line; call in the transaction that removes them.

        Takes the roll-up's lock (its watermark row) so a roll-up either sealed
        the hour before (nothing to carry) or counts it after this commit.
        """
        watermark = StatsWatermark.objects.select_for_update().filter(name=ROLLUP)
        rolled_until = watermark.values_list("rolled_until", flat=True).first()
        if rolled_until is None:
            return 0  # no roll-up yet: no counter to keep up
        seal_line = rolled_until - timedelta(hours=1)
        rows = jobs.filter(finished_at__gte=seal_line).values("id", *cls._COUNTED)
        carried = [JobStatsCarry(job_id=row.pop("id"), **row) for row in rows]
        JobStatsCarry.objects.bulk_create(carried)
        return len(carried)
