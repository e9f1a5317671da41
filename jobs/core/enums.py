"""Names the whole platform shares: job statuses, priorities and why a run stopped.

Every status, priority and stop reason is spelled here once; code compares
against these members, never against string literals.
"""

from __future__ import annotations

from enum import StrEnum

from django.db import models


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    SCHEDULED = "scheduled", "Scheduled"
    ACTIVE = "active", "Active"
    RETRYING = "retrying", "Retrying"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


#: What a job's owner reads for each status (the live job page); the enum's labels stay the admin's.
STATUS_LABELS: dict[str, str] = {
    JobStatus.QUEUED: "Waiting",
    JobStatus.SCHEDULED: "Scheduled",
    JobStatus.ACTIVE: "Running",
    JobStatus.RETRYING: "Waiting to retry",
    JobStatus.COMPLETED: "Done",
    JobStatus.FAILED: "Failed",
    JobStatus.CANCELLED: "Cancelled",
}


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


class RunHolder(StrEnum):
    """``worker_id`` values of an active job that no worker thread runs (a fan-out parent)."""

    #: The parent's own run is over; it waits for its children.
    AWAITING_CHILDREN = "children"
    #: The last finishing child is finishing the parent.
    FINALIZING = "finalizing"


class StopReason(StrEnum):
    """Why a run stopped other than by its own result; the text is what people read."""

    TIMED_OUT = "timed out"
    CANCELLED_BEFORE_RUN = "cancelled before it ran"
    CANCELLED_WHILE_RUNNING = "cancelled while running"
    CANCELLED_WITH_CHILDREN = "cancelled while its children ran"
    #: Past the shutdown grace: the run is interrupted and its job requeued, not cancelled.
    SHUTTING_DOWN = "worker shutting down"
    #: Another worker took the job over (this one was cut off past the heartbeat timeout, or
    #: frozen): this run's writes are refused and it stops, leaving the job to the new run.
    SUPERSEDED = "taken over by another worker"

    @staticmethod
    def timed_out(limit_s: int | float | None) -> str:
        """The error text of a run stopped by its queue's time limit."""
        return f"{StopReason.TIMED_OUT} after {limit_s} s"

    @staticmethod
    def is_timeout(text: str) -> bool:
        return text.startswith(StopReason.TIMED_OUT)
