from __future__ import annotations

from typing import Any

from rest_framework import serializers

from jobs.core.queues import queue_names
from jobs.models import Job, JobAttempt, JobStatus


class JobAttemptSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    class Meta:
        model = JobAttempt
        fields = ["number", "outcome", "error", "started_at", "finished_at"]


class JobStatusSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    """What ``GET /api/jobs/<id>/status`` answers."""

    data = serializers.JSONField(source="progress_data", read_only=True)  # type: ignore[assignment]
    error = serializers.SerializerMethodField()
    estimated_completion = serializers.DateTimeField(read_only=True, allow_null=True)
    parent = serializers.UUIDField(source="parent_id", read_only=True, allow_null=True)  # type: ignore[assignment]

    class Meta:
        model = Job
        fields = [
            "id",
            "type",
            "queue",
            "status",
            "progress",
            "data",
            "created_at",
            "scheduled_for",
            "started_at",
            "finished_at",
            "estimated_completion",
            "attempts",
            "max_attempts",
            "priority",
            "error",
            "result",
            "parent",
        ]

    def get_error(self, job: Job) -> str | None:
        return job.error_message or None


class JobDetailSerializer(JobStatusSerializer):
    attempt_history = JobAttemptSerializer(source="attempt_log", many=True, read_only=True)
    arguments = serializers.JSONField(read_only=True)

    class Meta(JobStatusSerializer.Meta):
        fields = [*JobStatusSerializer.Meta.fields, "arguments", "next_attempt_at", "attempt_history"]


class JobAcceptedSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """The 202 answer to ``POST /api/jobs/<type>``."""

    job_id = serializers.UUIDField()
    status = serializers.CharField()
    status_url = serializers.CharField()
    estimated_duration = serializers.CharField()
    estimated_duration_s = serializers.FloatField()
    created = serializers.BooleanField()


class JobFilterSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """Whitelisted filters of ``GET /api/jobs``."""

    status = serializers.ChoiceField(choices=JobStatus.choices, required=False)
    type = serializers.CharField(max_length=64, required=False)
    queue = serializers.ChoiceField(choices=queue_names(), required=False)
    ordering = serializers.ChoiceField(
        choices=["created_at", "-created_at", "finished_at", "-finished_at", "status", "-status"],
        required=False,
        default="-created_at",
    )
    page = serializers.IntegerField(min_value=1, required=False)

    def filters(self) -> dict[str, Any]:
        return {key: value for key, value in self.validated_data.items() if key in ("status", "type", "queue")}
