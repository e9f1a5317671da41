"""The platform's own datasets: a user's job history and the per-queue job metrics (staff).

Both carry each job's origin (``jobs.core.origin.JobOrigin``). The metrics
are read from the statistics' hourly buckets (``jobs.ops.stats``), a row per
queue and origin, so they count what the console, the weekly report, the
alerts and ``/metrics`` count: customer work never summed with canaries,
children, schedules' or maintenance jobs, and an OCR once.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model

from jobs.core.enums import JobStatus
from jobs.core.origin import JobOrigin
from jobs.core.queues import queue_names
from jobs.models import Job, JobStatsBucket
from jobs.ops.datasets.spec import (
    DATETIME,
    INTEGER,
    TEXT,
    Column,
    Dataset,
    Filter,
    choice,
    quoted_table,
    register_dataset,
)


def _seconds_between(start: str, end: str) -> dict[str, str]:
    return {
        "postgresql": f"ROUND(EXTRACT(EPOCH FROM ({end} - {start}))::numeric, 3)",
        "default": f"ROUND((julianday({end}) - julianday({start})) * 86400.0, 3)",
    }


def _jobs_from() -> str:
    return f"{quoted_table(Job)} j LEFT JOIN {quoted_table(get_user_model())} u ON u.id = j.owner_id"


_JOB_STATUSES = [status.value for status in JobStatus]
_JOB_DURATION = _seconds_between("j.started_at", "j.finished_at")

JOBS = register_dataset(
    Dataset(
        name="jobs",
        description="Your job history: type, status, queue, times and durations.",
        from_sql=_jobs_from,
        fields={
            "id": Column("j.id", kind="uuid"),
            "type": Column("j.type"),
            "queue": Column("j.queue"),
            "status": Column("j.status"),
            "priority": Column("j.priority"),
            "origin": Column("j.origin"),
            "attempts": Column("j.attempts"),
            "owner": Column("u.username"),
            "created_at": Column("j.created_at", kind="datetime"),
            "started_at": Column("j.started_at", kind="datetime"),
            "finished_at": Column("j.finished_at", kind="datetime"),
            "duration_s": Column(_JOB_DURATION),
            "error": Column("j.error_message"),
        },
        filters={
            "type": Filter("j.type", "exact", TEXT),
            "status": Filter("j.status", "in", choice(_JOB_STATUSES)),
            "queue": Filter("j.queue", "in", choice(queue_names())),
            "origin": Filter("j.origin", "in", choice(JobOrigin.values)),
            "created_after": Filter("j.created_at", "gte", DATETIME),
            "created_before": Filter("j.created_at", "lt", DATETIME),
            "finished_after": Filter("j.finished_at", "gte", DATETIME),
            "finished_before": Filter("j.finished_at", "lt", DATETIME),
            "error_contains": Filter("j.error_message", "icontains", TEXT),
            "owner_id": Filter("j.owner_id", "exact", INTEGER),
        },
        orderings={
            "created_at": "j.created_at",
            "started_at": "j.started_at",
            "finished_at": "j.finished_at",
            "type": "j.type",
            "status": "j.status",
            "duration_s": _JOB_DURATION,
        },
        default_ordering="created_at",
        tiebreak="j.id",
        owner_sql="j.owner_id",
        # ``origin`` is asked for by name (and filtered on): exports that name no fields keep their columns.
        default_fields=[
            "id",
            "type",
            "queue",
            "status",
            "priority",
            "attempts",
            "owner",
            "created_at",
            "started_at",
            "finished_at",
            "duration_s",
            "error",
        ],
    )
)


def _summed(column: str) -> str:
    return f"SUM(b.{column})"


_COMPLETED = _summed("completed")
_FAILED = _summed("failed")

#: The weekly analytics export's dataset.
JOB_METRICS = register_dataset(
    Dataset(
        name="job-metrics",
        description=(
            "Per-queue job metrics (jobs, success rate, durations) of finished jobs, a row per origin "
            "(customer work apart from child, schedule, canary and maintenance jobs), by whole UTC hours "
            "as the console counts them; staff only."
        ),
        # The statistics' hourly buckets (``jobs.ops.stats``), which the console, the weekly report,
        # the alerts and /metrics read too: the same jobs, counted by the same code. The current
        # hour is as of the scheduler's last roll-up (JOBS_STATS_ROLLUP_INTERVAL_S).
        from_sql=lambda: f"{quoted_table(JobStatsBucket)} b",
        fields={
            "queue": Column("b.queue"),
            "origin": Column("b.origin"),
            "jobs": Column(f"({_COMPLETED} + {_FAILED} + {_summed('cancelled')})"),
            "completed": Column(_COMPLETED),
            "failed": Column(_FAILED),
            "cancelled": Column(_summed("cancelled")),
            "retried": Column(_summed("retried")),
            "success_rate": Column(
                {
                    "postgresql": f"ROUND({_COMPLETED}::numeric / NULLIF({_COMPLETED} + {_FAILED}, 0), 4)",
                    "default": f"ROUND(CAST({_COMPLETED} AS REAL) / NULLIF({_COMPLETED} + {_FAILED}, 0), 4)",
                }
            ),
            # Of completed jobs, as on the console (a fan-out parent from its start to its last child's end).
            "avg_duration_s": Column(
                {
                    "postgresql": (
                        f"ROUND(({_summed('duration_sum_s')} / NULLIF({_summed('duration_count')}, 0))::numeric, 3)"
                    ),
                    "default": f"ROUND({_summed('duration_sum_s')} / NULLIF({_summed('duration_count')}, 0), 3)",
                }
            ),
        },
        filters={
            # Whole hours: an hour counts when it starts in [finished_after, finished_before).
            "finished_after": Filter("b.hour", "gte", DATETIME),
            "finished_before": Filter("b.hour", "lt", DATETIME),
            "queue": Filter("b.queue", "in", choice(queue_names())),
            "origin": Filter("b.origin", "in", choice(JobOrigin.values)),
        },
        orderings={"queue": "b.queue", "jobs": f"({_COMPLETED} + {_FAILED} + {_summed('cancelled')})"},
        default_ordering="queue",
        tiebreak="b.queue, b.origin",
        owner_sql=None,
        group_by="b.queue, b.origin",
        staff_only=True,
    )
)
