"""Hourly roll-ups of finished jobs: what the console reads instead of the Job table."""

from __future__ import annotations

from django.db import models
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


class StatsWatermark(models.Model):
    """Up to which hour the roll-up has run (one row); the next run starts an hour before it."""

    name = models.CharField(max_length=32, primary_key=True)
    rolled_until = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name}: {self.rolled_until}"
