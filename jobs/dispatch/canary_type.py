"""The platform's own job type: ``canary`` (staff only)."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from jobs.core.queues import queue_names
from jobs.dispatch.registry import JobPlan, JobType, register_job_type
from jobs.models import JobPriority


def _canary_actor_name(queue: str) -> str:
    # Same rule as jobs.tasks.canary_actor_name; not imported so that the
    # web process does not declare actors it never runs.
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
        actor=_canary_actor_name(data["queue"]),
        estimated_duration_s=max(1.0, float(data["seconds"])),
    )


CANARY = register_job_type(
    JobType(
        name="canary",
        queue="maintenance",
        actor=_canary_actor_name("maintenance"),
        serializer=CanarySerializer,
        description="Proves a queue alive: reports progress `steps` times over `seconds`; fails on request.",
        default_duration_s=1.0,
        staff_only=True,
        plan=plan_canary,
    )
)
