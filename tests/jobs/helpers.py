from __future__ import annotations

from typing import Any

import redis
from django.conf import settings

from jobs.dispatch import services
from jobs.dispatch.registry import get_job_type
from jobs.models import Job, JobStatus
from tests.workers import wait_for


def start(job_type: str, user: Any = None, **payload: Any) -> Job:
    kind = get_job_type(job_type)
    data = kind.payload_serializer()(data=payload)
    data.is_valid(raise_exception=True)
    return services.start_job(kind, user, dict(data.validated_data)).job


def canary(queue: str = "maintenance", **payload: Any) -> Job:
    return start("canary", None, queue=queue, **payload)


def reload(job: Job) -> Job:
    job.refresh_from_db()
    return job


def wait_status(job: Job, *statuses: str, timeout: float = 30.0) -> Job:
    wait_for(lambda: reload(job).status in statuses, timeout, what=f"job {job.type} to be {statuses}")
    return job


def wait_terminal(job: Job, timeout: float = 30.0) -> Job:
    return wait_status(job, JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED, timeout=timeout)


def recorded(kind: str) -> list[str]:
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        items: list[bytes] = client.lrange(f"{settings.DRAMATIQ_NAMESPACE}:test:{kind}", 0, -1)  # type: ignore[assignment]
        return [item.decode() for item in items]
    finally:
        client.close()
