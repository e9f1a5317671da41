"""Schedules and their fires: the claim row that makes each fire time enqueue one job."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone


def default_grace_seconds() -> int:
    return int(settings.SCHEDULER_MISFIRE_GRACE_S)


class Schedule(models.Model):
    """A recurring job: a cron expression (UTC) or an interval, and the job it enqueues.

    django-apscheduler computes the fire times; the unique ``ScheduleFire``
    row decides which scheduler process enqueues each one.
    """

    name = models.CharField(max_length=100, unique=True)
    description = models.CharField(max_length=255, blank=True, default="")
    cron = models.CharField(
        max_length=100, blank=True, default="", help_text="Five fields, in UTC: minute hour day month weekday."
    )
    interval_seconds = models.PositiveIntegerField(null=True, blank=True, help_text="Instead of a cron expression.")
    job_type = models.CharField(max_length=64, help_text="A registered job type, e.g. email-digest.")
    payload = models.JSONField(default=dict, blank=True, help_text="Validated by the job type's serializer.")
    paused = models.BooleanField(default=False)
    grace_seconds = models.PositiveIntegerField(
        default=default_grace_seconds, help_text="A fire time missed by less than this still runs (once)."
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(cron="") & Q(interval_seconds__isnull=False))
                | (~Q(cron="") & Q(interval_seconds__isnull=True)),
                name="schedule_cron_xor_interval",
            ),
            models.CheckConstraint(
                condition=Q(interval_seconds__isnull=True) | Q(interval_seconds__gte=1),
                name="schedule_interval_positive",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def apscheduler_id(self) -> str:
        return f"schedule-{self.pk}"

    @property
    def timing(self) -> str:
        return self.cron if self.cron else f"every {self.interval_seconds} s"

    def clean(self) -> None:
        # The cron expression and the payload are checked one layer up
        # (``jobs.ops.scheduling.firing.validate_schedule``), where the
        # triggers and the job types are known.
        if bool(self.cron) == (self.interval_seconds is not None):
            raise ValidationError("Give either a cron expression or an interval, not both.")


class FireOutcome(models.TextChoices):
    ENQUEUED = "enqueued", "Enqueued"
    SKIPPED = "skipped", "Skipped: previous job still running"
    MISSED = "missed", "Missed: past the grace period"
    FAILED = "failed", "Failed to enqueue"


class ScheduleFire(models.Model):
    """One fire time of a schedule; unique, so only one scheduler process can record it."""

    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="fires")
    fire_time = models.DateTimeField()
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="fires")
    outcome = models.CharField(max_length=16, choices=FireOutcome.choices)
    error = models.TextField(blank=True, default="")
    #: Which scheduler process recorded it (host:pid), for the rolling-deploy question "who fired?".
    fired_by = models.CharField(max_length=100, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-fire_time"]
        constraints = [models.UniqueConstraint(fields=["schedule", "fire_time"], name="schedule_fire_once")]
        indexes = [models.Index(fields=["schedule", "-fire_time"], name="schedule_fire_latest")]

    def __str__(self) -> str:
        return f"{self.schedule_id} at {self.fire_time:%Y-%m-%d %H:%M:%S} ({self.outcome})"
