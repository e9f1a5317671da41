"""The Export: one file generated from a dataset for a user, and how long it is kept."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone


class ExportFormat(models.TextChoices):
    CSV = "csv", "CSV"
    XLSX = "xlsx", "Excel (xlsx)"


class ExportStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    EXPIRED = "expired", "Expired"


CONTENT_TYPES = {
    ExportFormat.CSV: "text/csv",
    ExportFormat.XLSX: "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}

#: The platform's dataset that the weekly analytics export writes (for staff, with no owner).
JOB_METRICS_DATASET = "job-metrics"

#: States from which a (re)run of the export job may start.
RUNNABLE_STATUSES = (ExportStatus.PENDING, ExportStatus.RUNNING)


def default_expiry() -> datetime:
    return timezone.now() + timedelta(days=settings.EXPORT_EXPIRY_DAYS)


class Export(models.Model):
    """A file generated from one dataset with validated query parameters.

    State diagram (every arrow is a model method)::

        pending ── mark_running ──► running ── mark_completed ──► completed ── expire ──► expired
         │ ▲                          │  │
         │ └──── mark_pending ────────┘  └── mark_failed ──► failed
         │       (an attempt failed)                          ▲
         └────────────── mark_failed ─────────────────────────┘

    A completed export is expired from ``expires_at`` on, whatever its
    status says (``is_expired``): its download answers 410 at once, and the
    daily ``expire-exports`` job deletes its file and records ``expired``.

    The run marks it running, completed, or failed for its own reasons (too
    large). After a failed attempt it waits in pending: the job's next
    attempt runs it again, or the job's ``on_failed`` / ``on_cancelled``
    hook (``exports.outcomes``) fails it with the job's reason.

    In a run, ``exports.services`` calls every transition inside the
    platform's ``fenced()``: a run whose job another worker took over writes
    nothing here (``RunSuperseded``), and its file, named per attempt, is
    deleted rather than recorded.

    ``owner`` is empty for exports the system makes for staff (weekly analytics).
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="exports"
    )
    job = models.ForeignKey("jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="exports")
    dataset = models.CharField(max_length=64)
    #: The validated query: {"filters": {...}, "fields": [...], "ordering": "..."}.
    query_params = models.JSONField(default=dict, blank=True)
    #: Whether every user's rows are exported (the requester was staff).
    all_owners = models.BooleanField(default=False)
    format = models.CharField(max_length=8, choices=ExportFormat.choices, default=ExportFormat.CSV)
    status = models.CharField(max_length=16, choices=ExportStatus.choices, default=ExportStatus.PENDING)
    total_rows = models.PositiveIntegerField(null=True, blank=True)
    row_count = models.PositiveIntegerField(null=True, blank=True)
    file = models.FileField(upload_to="exports/", max_length=255, blank=True, default="")
    size_bytes = models.BigIntegerField(null=True, blank=True)
    peak_memory_mb = models.FloatField(null=True, blank=True)
    error_message = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(default=default_expiry)
    #: When staff were sent the weekly analytics email about it (system exports only).
    staff_notified_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["owner", "-created_at"], name="export_owner_created"),
            models.Index(fields=["status", "expires_at"], name="export_status_expires"),
        ]

    def __str__(self) -> str:
        return f"{self.dataset} {self.format} export {self.id} ({self.status})"

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[ExportFormat(self.format)]

    @property
    def download_name(self) -> str:
        return f"{self.dataset}-{self.created_at:%Y%m%d-%H%M%S}-{str(self.id)[:8]}.{self.format}"

    def is_expired(self, now: datetime | None = None) -> bool:
        """Expired by the flag, or a completed export whose time is up (the daily job may not have run yet)."""
        if self.status == ExportStatus.EXPIRED:
            return True
        return self.status == ExportStatus.COMPLETED and self.expires_at <= (now or timezone.now())

    @property
    def current_status(self) -> str:
        """The status as a client should read it: ``expired`` from ``expires_at`` on."""
        return ExportStatus.EXPIRED.value if self.is_expired() else str(self.status)

    # -- transitions (conditional updates: a late write never undoes a final state) --
    @classmethod
    def mark_running(cls, export_id: str) -> bool:
        return bool(
            cls.objects.filter(id=export_id, status__in=RUNNABLE_STATUSES).update(
                status=ExportStatus.RUNNING, error_message=""
            )
        )

    @classmethod
    def mark_pending(cls, export_id: str, error: str) -> bool:
        """An attempt failed and the job will try again."""
        return bool(
            cls.objects.filter(id=export_id, status=ExportStatus.RUNNING).update(
                status=ExportStatus.PENDING, error_message=error
            )
        )

    @classmethod
    def mark_completed(cls, export_id: str, **fields: Any) -> bool:
        return bool(
            cls.objects.filter(id=export_id, status=ExportStatus.RUNNING).update(
                status=ExportStatus.COMPLETED, finished_at=timezone.now(), error_message="", **fields
            )
        )

    @classmethod
    def mark_failed(cls, export_id: str, error: str, **fields: Any) -> bool:
        return bool(
            cls.objects.filter(id=export_id, status__in=RUNNABLE_STATUSES).update(
                status=ExportStatus.FAILED, finished_at=timezone.now(), error_message=error, **fields
            )
        )

    @classmethod
    def expire(cls, export_id: str) -> bool:
        """Its file was deleted: the row stays, expired, naming no file."""
        return bool(
            cls.objects.filter(id=export_id, status=ExportStatus.COMPLETED).update(status=ExportStatus.EXPIRED, file="")
        )

    @classmethod
    def mark_staff_notified(cls, export_id: str) -> bool:
        """Staff were emailed about this export (once: a retried job does not email them again)."""
        return bool(
            cls.objects.filter(id=export_id, staff_notified_at__isnull=True).update(staff_notified_at=timezone.now())
        )
