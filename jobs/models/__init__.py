"""The platform's tables, and nothing above them.

``job``: the Job mirror and its attempt history; ``schedule``: recurring jobs
and their fires; ``stats``: the console's hourly roll-ups; ``alert``: alert
breaches; ``audit``: operators' actions; ``pause``: paused queues; ``share``: fair-share weights. Modules
here import only ``jobs.core``; what changes these rows lives above (``jobs.state`` for jobs).
"""

from __future__ import annotations

from jobs.core.enums import (
    ACTIVE_STATUSES,
    RETRYABLE_STATUSES,
    TERMINAL_STATUSES,
    WAITING_STATUSES,
    JobPriority,
    JobStatus,
)
from jobs.models.alert import Alert, AlertStatus
from jobs.models.audit import AuditEvent
from jobs.models.job import Job, JobAttempt
from jobs.models.pause import QueuePause
from jobs.models.schedule import FireOutcome, Schedule, ScheduleFire
from jobs.models.share import ShareWeight
from jobs.models.stats import JobStatsBucket, JobStatsCarry, StatsWatermark

__all__ = [
    "ACTIVE_STATUSES",
    "RETRYABLE_STATUSES",
    "TERMINAL_STATUSES",
    "WAITING_STATUSES",
    "Alert",
    "AlertStatus",
    "AuditEvent",
    "FireOutcome",
    "Job",
    "JobAttempt",
    "JobPriority",
    "JobStatsBucket",
    "JobStatsCarry",
    "JobStatus",
    "QueuePause",
    "Schedule",
    "ScheduleFire",
    "ShareWeight",
    "StatsWatermark",
]
