"""Canaries: the platform's own job type ``canary`` (staff only), and sending one per queue.

A canary is one small job that proves a queue end to end; its actors live
in ``jobs.tasks`` (workers only).
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from rest_framework import serializers

from jobs.core.origin import SYSTEM, JobOrigin, Origin
from jobs.core.queues import queue_names
from jobs.dispatch.registry import JobPlan, JobType, register_job_type
from jobs.dispatch.services import build_job, create_jobs
from jobs.models import Job, JobPriority


def canary_actor_name(queue: str) -> str:
    """One canary actor per queue (declared in ``jobs.tasks``, which workers import)."""
    return "canary_" + queue.replace("-", "_")


class CanaryFailField(serializers.Field):  # type: ignore[type-arg]
    """``true``/``false`` (a retried failure) or ``"permanent"`` (not retried)."""

    def to_internal_value(self, data: Any) -> bool | str:
        if data in (True, False, "permanent"):
            return data  # type: ignore[no-any-return]
        raise serializers.ValidationError('must be true, false or "permanent"')

    def to_representation(self, value: Any) -> Any:
        return value


class CanarySerializer(serializers.Serializer):  # type: ignore[type-arg]
    queue = serializers.ChoiceField(choices=queue_names())
    seconds = serializers.FloatField(min_value=0, max_value=3600, default=0)
    steps = serializers.IntegerField(min_value=1, max_value=1000, default=1)
    fail = CanaryFailField(required=False, default=False)  # type: ignore[assignment]
    priority = serializers.ChoiceField(choices=JobPriority.choices, default=JobPriority.NORMAL)


def plan_canary(user: Any, data: dict[str, Any]) -> JobPlan:
    arguments = {key: data[key] for key in ("queue", "seconds", "steps", "fail")}
    return JobPlan(
        arguments=arguments,
        priority=data["priority"],
        queue=data["queue"],
        actor=canary_actor_name(data["queue"]),
        estimated_duration_s=max(1.0, float(data["seconds"])),
    )


CANARY = register_job_type(
    JobType(
        name="canary",
        queue="maintenance",
        actor=canary_actor_name("maintenance"),
        serializer=CanarySerializer,
        description="Proves a queue alive: reports progress `steps` times over `seconds`; fails on request.",
        default_duration_s=1.0,
        staff_only=True,
        # Not deferrable: it measures pickup, and refusing it under a backlog would hide the backlog.
        deferrable=False,
        plan=plan_canary,
        origin=JobOrigin.CANARY,
    )
)


#: Idempotency key prefix of the canaries a worker process sends when it starts (``jobs.worker.middleware.presence``).
WORKER_START_KEY_PREFIX = "worker-start:"


def send_canaries(
    queues: list[str] | None = None, *, seconds: float = 0.0, key_prefix: str = "", origin: Origin = SYSTEM
) -> list[Job]:
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
                origin=origin,
            )
        )
    with transaction.atomic():
        return create_jobs(jobs)
