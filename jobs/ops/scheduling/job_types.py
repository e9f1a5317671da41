"""The scheduler's platform job type: ``cleanup`` (staff only, monthly)."""

from __future__ import annotations

from rest_framework import serializers

from jobs.core.origin import JobOrigin
from jobs.dispatch.registry import JobPlan, JobType, register_job_type

CLEANUP_ACTOR = "run_cleanup"


class CleanupSerializer(serializers.Serializer):  # type: ignore[type-arg]
    pass


CLEANUP = register_job_type(
    JobType(
        name="cleanup",
        queue="maintenance",
        actor=CLEANUP_ACTOR,
        serializer=CleanupSerializer,
        description="Prune finished jobs past JOBS_RETENTION_DAYS in batches, then run the apps' cleanup hooks.",
        default_duration_s=60.0,
        staff_only=True,
        plan=lambda user, data: JobPlan(arguments={}),
        origin=JobOrigin.MAINTENANCE,
    )
)
