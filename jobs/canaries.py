"""Sending canaries: one small job per queue that proves the queue end to end."""

from __future__ import annotations

from django.db import transaction

from jobs.job_types import CANARY, plan_canary
from jobs.models import Job, JobPriority
from jobs.queues import queue_names
from jobs.services import build_job, create_jobs


def send_canaries(queues: list[str] | None = None, *, seconds: float = 0.0) -> list[Job]:
    """Enqueue one canary on each queue (high priority: it measures pickup, not backlog)."""
    jobs = []
    for queue in queues or queue_names():
        plan = plan_canary(
            None,
            {"queue": queue, "seconds": seconds, "steps": 1, "fail": False, "priority": JobPriority.HIGH},
        )
        jobs.append(
            build_job(
                job_type=CANARY.name,
                queue=queue,
                actor=plan.actor or CANARY.actor,
                arguments=plan.arguments,
                priority=plan.priority,
                estimated_duration_s=1.0,
            )
        )
    with transaction.atomic():
        return create_jobs(jobs)
