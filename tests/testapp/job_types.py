"""Registers the test actors as job types, so tests start them through the real API."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from jobs.dispatch.outcomes import ChildrenSummary, JobOutcome
from jobs.dispatch.registry import JobPlan, JobType, register_job_type
from jobs.models import JobPriority


class TestWorkSerializer(serializers.Serializer):  # type: ignore[type-arg]
    queue = serializers.ChoiceField(choices=["maintenance", "thumbnails", "csv-export"])
    seconds = serializers.FloatField(min_value=0, max_value=600, default=0)
    priority = serializers.ChoiceField(choices=JobPriority.choices, default=JobPriority.NORMAL)


def _planner(prefix: str) -> Any:
    def plan(user: Any, data: dict[str, Any]) -> JobPlan:
        return JobPlan(
            arguments={"queue": data["queue"], "seconds": data["seconds"]},
            priority=data["priority"],
            queue=data["queue"],
            actor=f"{prefix}_{data['queue'].replace('-', '_')}",
        )

    return plan


for _name, _prefix in (
    ("test-sleep-subprocess", "test_sleep_in_subprocess"),
    ("test-sleep-child-c", "test_sleep_in_child_c"),
    ("test-record-run", "test_record_run"),
):
    register_job_type(
        JobType(
            name=_name,
            queue="maintenance",
            actor=f"{_prefix}_maintenance",
            serializer=TestWorkSerializer,
            description="test only",
            plan=_planner(_prefix),
        )
    )


class FanOutSerializer(serializers.Serializer):  # type: ignore[type-arg]
    children = serializers.IntegerField(min_value=0, max_value=100)
    fail = serializers.ListField(  # type: ignore[assignment]
        child=serializers.IntegerField(), required=False, default=list
    )


def _collect(parent: JobOutcome, summary: ChildrenSummary) -> dict[str, Any]:
    return {"collected": summary.completed, "lost": summary.failed}


register_job_type(
    JobType(
        name="test-fanout",
        queue="maintenance",
        actor="test_fan_out_records",
        serializer=FanOutSerializer,
        description="test only",
        plan=lambda user, data: JobPlan(
            arguments={"queue": "maintenance", "children": data["children"], "fail": data["fail"]}
        ),
        on_children_done=_collect,
    )
)
