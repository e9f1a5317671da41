"""The job table and its attempt history: fields, indexes and derived values only.

State changes live one layer up, in ``jobs.state.transitions``: every
transition is a conditional write there, so a late progress write or a
duplicate message never overwrites a final state.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from jobs.core.enums import TERMINAL_STATUSES, JobPriority, JobStatus
from jobs.core.origin import LABEL_MAX, JobOrigin, Via


class Job(models.Model):
    """A unit of background work, mirroring one Dramatiq message.

    State diagram (every arrow is a function of ``jobs.state.transitions``; anything else is refused)::

        enqueue ──► queued ◄────────────── retry() ◄── failed / cancelled
          │           │  ▲  ▲
          │ due later │  │  └──────────── requeue_after_shutdown / requeue_lost
          ▼           │  │                                    ▲
        scheduled ────┤  └─ (sent when due)                   │
                      ▼                                       │
                    claim ──► active ─── mark_completed ──► completed
                      ▲        │  │  └── mark_failed ──────► failed
                      │        │  │       (permanent error, out of attempts,
                      │        │  │        timed out, actor gone)
                      │        │  └───── mark_cancelled ───► cancelled
                      │        ▼
                      └──── retrying  (mark_retrying: error with attempts left)

        queued / scheduled / retrying ── request_cancel() ──► cancelled
        active ── request_cancel() ──► (flag) ──► cancelled at the next progress call

    Writes use conditional ``UPDATE ... WHERE status = ...`` so that a late
    progress write or a duplicate message never overwrites a final state.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Not indexed alone: job_type_finished leads with it (see Meta.indexes).
    type = models.CharField(max_length=64)
    queue = models.CharField(max_length=64)
    actor = models.CharField(max_length=128)
    arguments = models.JSONField(default=dict, blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="jobs",
        db_index=False,  # job_owner_created leads with it
    )
    priority = models.CharField(max_length=8, choices=JobPriority.choices, default=JobPriority.NORMAL)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0)
    progress_data = models.JSONField(default=dict, blank=True)
    result = models.JSONField(null=True, blank=True)
    error_message = models.TextField(blank=True, default="")
    traceback = models.TextField(blank=True, default="")
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=1)
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="children",
        db_index=False,  # job_parent: only jobs that have a parent
    )
    worker_id = models.CharField(max_length=64, blank=True, default="")
    #: The Redis message id of the running attempt's claim: a claim sent again after its reply
    #: was lost recognises itself by it (a duplicate message of the job has another id).
    run_message = models.CharField(max_length=64, blank=True, default="", db_default="")
    estimated_duration_s = models.FloatField(null=True, blank=True)
    # NULL, not "", when absent: the unique (owner, key) constraint must ignore jobs without a key.
    idempotency_key = models.CharField(max_length=128, null=True, blank=True)  # noqa: DJ001
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    scheduled_for = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)
    #: How the job was started (jobs.core.origin.Via) and by whom: kept on the row, no extra insert.
    # db_default too: rows written by SQL (bulk seeding, older code during a rolling deploy) get them.
    created_via = models.CharField(max_length=16, choices=Via.choices, default=Via.SYSTEM, db_default=Via.SYSTEM)
    created_by = models.CharField(max_length=LABEL_MAX, blank=True, default="", db_default="")
    #: Whose work this is (customer, child, schedule, canary, maintenance): statistics count
    #: customer work apart from the rest. Set by ``build_job``; migration 0014 filled older rows.
    origin = models.CharField(
        max_length=16, choices=JobOrigin.choices, default=JobOrigin.CUSTOMER, db_default=JobOrigin.CUSTOMER
    )

    class Meta:
        ordering = ["-created_at"]
        # Every status change rewrites the row's entry in each index (status
        # is indexed, so no update is HOT): each index here costs every job
        # two index insertions. Keep the list short; partial where possible.
        indexes = [
            models.Index(fields=["status", "queue"], name="job_status_queue"),
            models.Index(fields=["parent"], name="job_parent", condition=Q(parent__isnull=False)),
            models.Index(fields=["finished_at"], name="job_finished_at", condition=Q(finished_at__isnull=False)),
            models.Index(fields=["owner", "-created_at"], name="job_owner_created"),
            models.Index(fields=["type", "status", "-finished_at"], name="job_type_finished"),
            models.Index(fields=["-created_at"], name="job_created"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="job_unique_idempotency_key",
            ),
            models.CheckConstraint(condition=Q(progress__lte=100), name="job_progress_le_100"),
        ]
        permissions = [("set_high_priority", "Can start jobs at high priority")]

    def __str__(self) -> str:
        return f"{self.type} {self.id} ({self.status})"

    # -- derived --------------------------------------------------------
    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def estimated_completion(self) -> datetime | None:
        """When the job should finish, extrapolated from its progress rate."""
        if self.status != JobStatus.ACTIVE or not self.started_at:
            return None
        if self.progress <= 0:
            if self.estimated_duration_s:
                return self.started_at + timedelta(seconds=self.estimated_duration_s)
            return None
        elapsed = (self.updated_at - self.started_at).total_seconds()
        total = elapsed * 100.0 / self.progress
        return self.started_at + timedelta(seconds=total)


class JobAttempt(models.Model):
    """An attempt that did not succeed: the history kept across retries."""

    class Outcome(models.TextChoices):
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"
        WORKER_LOST = "worker-lost", "Worker lost"

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    error = models.TextField(blank=True, default="")
    worker_id = models.CharField(max_length=64, blank=True, default="")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["job", "number"]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.job_id}: {self.outcome}"
