"""The Job mirror: one row per Dramatiq message, kept true by the middleware."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, models, transaction
from django.db.models import F, Q
from django.db.models.functions import Greatest
from django.utils import timezone

from jobs import events
from jobs.exceptions import JobNotCancellable, JobNotRetryable
from jobs.hot_writes import Claim, Completion
from jobs.writer import state_writer

logger = logging.getLogger(__name__)


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    SCHEDULED = "scheduled", "Scheduled"
    ACTIVE = "active", "Active"
    RETRYING = "retrying", "Retrying"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class JobPriority(models.TextChoices):
    HIGH = "high", "High"
    NORMAL = "normal", "Normal"


#: Waiting for a worker: a message is (or will be) in Redis for them.
WAITING_STATUSES = (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.RETRYING)
#: Not finished yet.
ACTIVE_STATUSES = (*WAITING_STATUSES, JobStatus.ACTIVE)
#: Final unless someone retries the job by hand.
TERMINAL_STATUSES = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)
#: States a manual retry may start from.
RETRYABLE_STATUSES = (JobStatus.FAILED, JobStatus.CANCELLED)


#: ``worker_id`` of a parent job that has fanned out and waits for its children.
AWAITING_CHILDREN = "children"
#: ``worker_id`` of a parent job whose last child is finishing it.
FINALIZING = "finalizing"


def _execute(sql: str, params: list[Any]) -> bool:
    """Run one plain-SQL write (grouped with others in a worker process); True when it changed a row."""

    def run() -> bool:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return bool(cursor.rowcount)

    return state_writer.write(run)


def _prep_id(job_id: str) -> Any:
    return Job._meta.pk.get_db_prep_value(job_id, connection)  # type: ignore[union-attr]


def _prep_time(value: datetime) -> Any:
    return connection.ops.adapt_datetimefield_value(value)


def _prep_json(field_name: str, value: Any) -> Any:
    return Job._meta.get_field(field_name).get_db_prep_value(value, connection)  # type: ignore[union-attr]


def _bounded(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    # Keep the end of a traceback: that is where the error is.
    return "…" + text[-(limit - 1) :]


class Job(models.Model):
    """A unit of background work, mirroring one Dramatiq message.

    State diagram (every arrow is a model method; anything else is refused)::

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

    # -- transitions used by workers (by id: the hot path reads no row) --
    @classmethod
    def claim(cls, job_id: str, expected_attempts: int, worker_id: str) -> bool:
        """Start an attempt: only a waiting job whose attempt count matches the message."""
        return bool(state_writer.write(Claim(job_id, expected_attempts, worker_id)))

    @classmethod
    def take_over(cls, job_id: str, dead_worker_id: str, worker_id: str) -> bool:
        """Run again a job whose worker died while running it (its message was redelivered)."""
        now = timezone.now()
        with transaction.atomic():
            updated = cls.objects.filter(id=job_id, status=JobStatus.ACTIVE, worker_id=dead_worker_id).update(
                attempts=F("attempts") + 1, worker_id=worker_id, started_at=now, updated_at=now
            )
            if updated:
                JobAttempt.record(job_id, outcome=JobAttempt.Outcome.WORKER_LOST, worker_id=dead_worker_id)
        return bool(updated)

    @classmethod
    def record_progress(cls, job_id: str, percent: int, data: dict[str, Any]) -> bool:
        """Write progress; False when the job is no longer running or a cancel was asked."""
        return _execute(
            f"UPDATE {cls._meta.db_table} SET progress = %s, progress_data = %s, updated_at = %s "
            "WHERE id = %s AND status = %s AND cancel_requested_at IS NULL",
            [
                max(0, min(100, int(percent))),
                _prep_json("progress_data", data),
                _prep_time(timezone.now()),
                _prep_id(job_id),
                JobStatus.ACTIVE,
            ],
        )

    @classmethod
    def mark_completed(
        cls, job_id: str, worker_id: str, result: Any, progress_data: dict[str, Any] | None = None
    ) -> bool:
        """Finish a run; ``progress_data`` carries a last progress report that was not written yet."""
        return bool(state_writer.write(Completion(job_id, worker_id, result, progress_data)))

    @classmethod
    def mark_completed_later(
        cls,
        job_id: str,
        worker_id: str,
        result: Any,
        progress_data: dict[str, Any] | None,
        *,
        on_committed: Callable[[], None],
    ) -> None:
        """``mark_completed`` without waiting: ``on_committed`` runs once it is durable.

        If the write fails for good, ``on_committed`` never runs: the message
        stays unacknowledged and is redelivered once this worker is gone,
        rather than acknowledged for a job whose row still says ``active``.
        """

        def done(_result: Any, error: BaseException | None) -> None:
            if error is None:
                on_committed()
            else:
                logger.error("Job %s finished but its completion could not be written: %s", job_id, error)

        state_writer.write_later(Completion(job_id, worker_id, result, progress_data), done)

    @classmethod
    def mark_retrying(cls, job_id: str, worker_id: str, error: str, tb: str, next_attempt_at: datetime) -> bool:
        now = timezone.now()
        with transaction.atomic():
            updated = cls.objects.filter(id=job_id, status=JobStatus.ACTIVE, worker_id=worker_id).update(
                status=JobStatus.RETRYING,
                error_message=_bounded(error, settings.JOBS_ERROR_MAX_CHARS),
                traceback=_bounded(tb, settings.JOBS_TRACEBACK_MAX_CHARS),
                next_attempt_at=next_attempt_at,
                updated_at=now,
            )
            if updated:
                JobAttempt.record(job_id, outcome=JobAttempt.Outcome.FAILED, worker_id=worker_id, error=error)
                events.publish_status(job_id, JobStatus.RETRYING, error=error)
        return bool(updated)

    @classmethod
    def mark_failed(cls, job_id: str, error: str, tb: str = "", *, worker_id: str | None = None) -> bool:
        """Fail a running job (or, with no worker, any unfinished one: actor gone, lost for good)."""
        now = timezone.now()
        query = cls.objects.filter(id=job_id)
        if worker_id is not None:
            query = query.filter(status=JobStatus.ACTIVE, worker_id=worker_id)
        else:
            query = query.filter(status__in=ACTIVE_STATUSES)
        with transaction.atomic():
            updated = query.update(
                status=JobStatus.FAILED,
                error_message=_bounded(error, settings.JOBS_ERROR_MAX_CHARS),
                traceback=_bounded(tb, settings.JOBS_TRACEBACK_MAX_CHARS),
                finished_at=now,
                updated_at=now,
            )
            if updated:
                JobAttempt.record(job_id, outcome=JobAttempt.Outcome.FAILED, worker_id=worker_id or "", error=error)
                events.publish_status(job_id, JobStatus.FAILED, error=error)
        return bool(updated)

    @classmethod
    def mark_cancelled(
        cls, job_id: str, reason: str = "cancelled", *, from_statuses: tuple[str, ...] = ACTIVE_STATUSES
    ) -> bool:
        now = timezone.now()
        with transaction.atomic():
            updated = cls.objects.filter(id=job_id, status__in=from_statuses).update(
                status=JobStatus.CANCELLED, error_message=reason, finished_at=now, updated_at=now
            )
            if updated:
                JobAttempt.record(job_id, outcome=JobAttempt.Outcome.CANCELLED, error=reason)
                events.publish_status(job_id, JobStatus.CANCELLED, error=reason)
        return bool(updated)

    @classmethod
    def reschedule(cls, job_id: str, worker_id: str, run_at: datetime, reason: str) -> bool:
        """Put a running job back to wait until ``run_at``; the attempt does not count."""
        now = timezone.now()
        updated = cls.objects.filter(id=job_id, status=JobStatus.ACTIVE, worker_id=worker_id).update(
            status=JobStatus.SCHEDULED,
            attempts=F("attempts") - 1,
            worker_id="",
            scheduled_for=run_at,
            progress_data={"message": reason},
            updated_at=now,
        )
        if updated:
            events.publish_status(job_id, JobStatus.SCHEDULED, data={"message": reason})
        return bool(updated)

    @classmethod
    def requeue_after_shutdown(cls, job_id: str, worker_id: str) -> bool:
        """Give back a job interrupted by a worker shutdown; the attempt does not count."""
        now = timezone.now()
        updated = cls.objects.filter(id=job_id, status=JobStatus.ACTIVE, worker_id=worker_id).update(
            status=JobStatus.QUEUED,
            attempts=F("attempts") - 1,
            worker_id="",
            progress=0,
            updated_at=now,
        )
        if updated:
            events.publish_status(job_id, JobStatus.QUEUED, progress=0)
        return bool(updated)

    @classmethod
    def requeue_lost(cls, job_id: str, dead_worker_id: str) -> bool:
        """A running job whose worker died and whose message Redis lost: run it again."""
        now = timezone.now()
        with transaction.atomic():
            updated = cls.objects.filter(id=job_id, status=JobStatus.ACTIVE, worker_id=dead_worker_id).update(
                status=JobStatus.QUEUED, worker_id="", updated_at=now
            )
            if updated:
                JobAttempt.record(job_id, outcome=JobAttempt.Outcome.WORKER_LOST, worker_id=dead_worker_id)
                events.publish_status(job_id, JobStatus.QUEUED)
        return bool(updated)

    # -- fan-out: a parent that waits for its children -------------------
    @classmethod
    def await_children(cls, job_id: str, worker_id: str, percent: int, data: dict[str, Any]) -> bool:
        """The parent's own run is over; it stays active until its children finish."""
        updated = cls.objects.filter(id=job_id, status=JobStatus.ACTIVE, worker_id=worker_id).update(
            worker_id=AWAITING_CHILDREN, progress=percent, progress_data=data, updated_at=timezone.now()
        )
        if updated:
            events.publish_progress_on_commit(job_id, percent, data)
        return bool(updated)

    @classmethod
    def record_parent_progress(cls, job_id: str, percent: int, data: dict[str, Any]) -> bool:
        """Progress of a parent waiting for (or being finished by) its children; it never goes back."""
        query = cls.objects.filter(id=job_id, status=JobStatus.ACTIVE, worker_id__in=(AWAITING_CHILDREN, FINALIZING))
        done = (data.get("fanout") or {}).get("done")
        if isinstance(done, int):
            # Two children finishing together each count the finished ones: the
            # count taken first may commit last, and must not undo the other's.
            query = query.filter(Q(progress_data__fanout__done__isnull=True) | Q(progress_data__fanout__done__lte=done))
        updated = query.update(
            progress=Greatest(F("progress"), max(0, min(100, int(percent)))),
            progress_data=data,
            updated_at=timezone.now(),
        )
        if updated:
            events.publish_progress_on_commit(job_id, percent, data)
        return bool(updated)

    @classmethod
    def claim_finalization(cls, job_id: str) -> bool:
        """Exactly one finishing child gets to finish the parent."""
        return bool(
            cls.objects.filter(id=job_id, status=JobStatus.ACTIVE, worker_id=AWAITING_CHILDREN).update(
                worker_id=FINALIZING, updated_at=timezone.now()
            )
        )

    @classmethod
    def finish_parent(cls, job_id: str, *, result: Any = None, failed: str = "", tb: str = "") -> bool:
        now = timezone.now()
        query = cls.objects.filter(id=job_id, status=JobStatus.ACTIVE, worker_id=FINALIZING)
        if failed:
            updated = query.update(
                status=JobStatus.FAILED,
                error_message=_bounded(failed, settings.JOBS_ERROR_MAX_CHARS),
                traceback=_bounded(tb, settings.JOBS_TRACEBACK_MAX_CHARS),
                finished_at=now,
                updated_at=now,
            )
            if updated:
                events.publish_status(job_id, JobStatus.FAILED, error=failed)
            return bool(updated)
        updated = query.update(status=JobStatus.COMPLETED, progress=100, result=result, finished_at=now, updated_at=now)
        if updated:
            events.publish_status(job_id, JobStatus.COMPLETED, progress=100)
        return bool(updated)

    @classmethod
    def mark_sent_scheduled(cls, job_id: str) -> None:
        """Touch a scheduled job whose message went to Redis, so the reconciler waits its grace."""
        cls.objects.filter(id=job_id, status=JobStatus.SCHEDULED).update(updated_at=timezone.now())

    # -- transitions asked for by people --------------------------------
    def request_cancel(self) -> bool:
        """Cancel now if waiting; if running, flag it so it stops at its next progress call.

        Returns True when the job is already cancelled on return.
        """
        if self.status in TERMINAL_STATUSES:
            raise JobNotCancellable(f"job is {self.status}")
        if Job.mark_cancelled(str(self.id), "cancelled before it ran", from_statuses=WAITING_STATUSES):
            self.refresh_from_db()
            return True
        if (
            self.worker_id == AWAITING_CHILDREN
            and Job.objects.filter(id=self.id, status=JobStatus.ACTIVE, worker_id=AWAITING_CHILDREN).exists()
        ):
            # No worker runs a parent waiting for its children: cancel it here.
            Job.mark_cancelled(str(self.id), "cancelled while its children ran")
            self.refresh_from_db()
            return True
        # Running (or just claimed): ask its worker to stop it.
        now = timezone.now()
        Job.objects.filter(id=self.id, status=JobStatus.ACTIVE, cancel_requested_at__isnull=True).update(
            cancel_requested_at=now, updated_at=now
        )
        self.refresh_from_db()
        return self.status == JobStatus.CANCELLED

    def retry(self, extra_attempts: int) -> None:
        """Send a failed or cancelled job again under the same id; its attempt history stays."""
        now = timezone.now()
        updated = Job.objects.filter(id=self.id, status__in=RETRYABLE_STATUSES).update(
            status=JobStatus.QUEUED,
            progress=0,
            progress_data={},
            result=None,
            error_message="",
            traceback="",
            worker_id="",
            cancel_requested_at=None,
            started_at=None,
            finished_at=None,
            next_attempt_at=None,
            max_attempts=F("attempts") + extra_attempts,
            updated_at=now,
        )
        if not updated:
            self.refresh_from_db()
            raise JobNotRetryable(f"only failed or cancelled jobs can be retried; this one is {self.status}")
        self.refresh_from_db()
        events.publish_status(self.id, JobStatus.QUEUED, progress=0, data={}, owner_id=self.owner_id, owner_known=True)


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

    @classmethod
    def record(cls, job_id: str, *, outcome: str, worker_id: str = "", error: str = "") -> None:
        row = Job.objects.filter(id=job_id).values("attempts", "started_at").first()
        if row is None:
            return
        cls.objects.create(
            job_id=job_id,
            number=row["attempts"],
            outcome=outcome,
            worker_id=worker_id,
            error=_bounded(error, settings.JOBS_ERROR_MAX_CHARS),
            started_at=row["started_at"],
        )


# Schedules and their fires live in their own module (recurring jobs, see jobs/scheduling/).
from jobs.scheduling.models import FireOutcome, Schedule, ScheduleFire  # noqa: E402,F401

# Hourly statistics for the console (see jobs/stats.py).
from jobs.stats_models import JobStatsBucket, StatsWatermark  # noqa: E402,F401
