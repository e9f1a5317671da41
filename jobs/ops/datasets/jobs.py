"""The platform's own datasets: a user's job history and the per-queue job metrics (staff).

Both carry each job's origin (``jobs.core.origin.JobOrigin``): the metrics
have a row per queue and origin, so customer work is never summed with
canaries, children, schedules' or maintenance jobs, as in ``jobs.ops.stats``.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model

from jobs.core.enums import JobStatus
from jobs.core.origin import JobOrigin
from jobs.core.queues import queue_names
from jobs.models import Job
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


def _count_where(condition: str) -> str:
    return f"SUM(CASE WHEN {condition} THEN 1 ELSE 0 END)"


_COMPLETED = _count_where(f"j.status = '{JobStatus.COMPLETED.value}'")
_FAILED = _count_where(f"j.status = '{JobStatus.FAILED.value}'")
_SECONDS = _seconds_between("j.started_at", "j.finished_at")

#: The weekly analytics export's dataset.
JOB_METRICS = register_dataset(
    Dataset(
        name="job-metrics",
        description=(
            "Per-queue job metrics (jobs, success rate, durations) of finished jobs, a row per origin "
            "(customer work apart from child, schedule, canary and maintenance jobs); staff only."
        ),
        from_sql=lambda: f"{quoted_table(Job)} j",
        fields={
            "queue": Column("j.queue"),
            "origin": Column("j.origin"),
            "jobs": Column("COUNT(*)"),
            "completed": Column(_COMPLETED),
            "failed": Column(_FAILED),
            "cancelled": Column(_count_where(f"j.status = '{JobStatus.CANCELLED.value}'")),
            "success_rate": Column(
                {
                    "postgresql": f"ROUND({_COMPLETED}::numeric / NULLIF({_COMPLETED} + {_FAILED}, 0), 4)",
                    "default": f"ROUND(CAST({_COMPLETED} AS REAL) / NULLIF({_COMPLETED} + {_FAILED}, 0), 4)",
                }
            ),
            "avg_duration_s": Column(
                {
                    "postgresql": f"ROUND(AVG({_SECONDS['postgresql']}), 3)",
                    "default": f"ROUND(AVG({_SECONDS['default']}), 3)",
                }
            ),
            "max_duration_s": Column(
                {"postgresql": f"MAX({_SECONDS['postgresql']})", "default": f"MAX({_SECONDS['default']})"}
            ),
        },
        filters={
            "finished_after": Filter("j.finished_at", "gte", DATETIME),
            "finished_before": Filter("j.finished_at", "lt", DATETIME),
            "queue": Filter("j.queue", "in", choice(queue_names())),
            "origin": Filter("j.origin", "in", choice(JobOrigin.values)),
        },
        orderings={"queue": "j.queue", "jobs": "COUNT(*)"},
        default_ordering="queue",
        tiebreak="j.queue, j.origin",
        owner_sql=None,
        group_by="j.queue, j.origin",
        staff_only=True,
    )
)
