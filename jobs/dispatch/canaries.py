"""Sending canaries: one small job per queue that proves the queue end to end."""

from __future__ import annotations

from django.db import transaction

from jobs.core.queues import queue_names
from jobs.dispatch.canary_type import CANARY, plan_canary
from jobs.dispatch.services import build_job, create_jobs
from jobs.models import Job, JobPriority

#: Idempotency key prefix of the canaries a worker process sends when it starts (``jobs.worker.middleware.presence``).
WORKER_START_KEY_PREFIX = "worker-start:"


def send_canaries(queues: list[str] | None = None, *, seconds: float = 0.0, key_prefix: str = "") -> list[Job]:
    """Enqueue one canary on each queue (high priority: it measures pickup, not backlog).

    ``key_prefix``: each canary's idempotency key is the prefix and its queue (tells them apart).
    """
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
                idempotency_key=f"{key_prefix}{queue}"[:128] if key_prefix else None,
            )
        )
    with transaction.atomic():
        return create_jobs(jobs)
