"""What a domain app may ask about its jobs without reading Job rows itself."""

from __future__ import annotations

from typing import Any

from jobs.core.enums import ACTIVE_STATUSES, JobStatus
from jobs.models import Job


def is_unfinished(job_id: Any) -> bool:
    """Whether the job is still waiting or running (a duplicate request can answer with it)."""
    return job_id is not None and Job.objects.filter(id=job_id, status__in=ACTIVE_STATUSES).exists()


def recent_results(job_type: str, limit: int = 20) -> list[Any]:
    """The results of the latest completed jobs of a type, newest first (for the domain's own estimates)."""
    return list(
        Job.objects.filter(type=job_type, status=JobStatus.COMPLETED)
        .exclude(result=None)
        .order_by("-finished_at")
        .values_list("result", flat=True)[:limit]
    )
