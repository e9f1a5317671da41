"""Bulk work for the fault suite: many small canary jobs, and counting how they ended."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Count

from jobs.dispatch.services import build_job, create_jobs
from jobs.models import Job, JobAttempt, JobStatus
from tests.workers import WorkerPool, wait_for


def enqueue_canaries(count: int, queue: str, seconds: float) -> list[str]:
    """Record and send ``count`` canaries on ``queue``, in batches as the API's bulk path does."""
    arguments = {"queue": queue, "seconds": seconds, "steps": 1, "fail": False}
    actor = "canary_" + queue.replace("-", "_")
    ids: list[str] = []
    for first in range(0, count, 500):
        with transaction.atomic():
            batch = create_jobs(
                [
                    build_job(job_type="canary", queue=queue, actor=actor, arguments=arguments)
                    for _ in range(min(500, count - first))
                ]
            )
        ids.extend(str(job.id) for job in batch)
    return ids


def completed(ids: list[str]) -> int:
    return Job.objects.filter(id__in=ids, status=JobStatus.COMPLETED).count()


def statuses(ids: list[str]) -> dict[str, int]:
    rows = Job.objects.filter(id__in=ids).values("status").annotate(n=Count("id"))
    return {row["status"]: row["n"] for row in rows}


def wait_all_completed(ids: list[str], timeout: float = 120.0) -> None:
    wait_for(
        lambda: completed(ids) == len(ids),
        timeout,
        interval=0.5,
        what=f"all {len(ids)} jobs to complete (now {statuses(ids)})",
    )


def worker_lost_attempts(ids: list[str]) -> list[str]:
    """Ids of the jobs among ``ids`` that record an attempt lost with its worker."""
    return [
        str(job_id)
        for job_id in JobAttempt.objects.filter(job_id__in=ids, outcome=JobAttempt.Outcome.WORKER_LOST).values_list(
            "job_id", flat=True
        )
    ]


def worker_pids(pool: WorkerPool) -> set[int]:
    return {process.pid for process in pool.worker_processes()}


#: What each ``test_wait_then`` job ends as, once its worker's final write is durable.
WAIT_THEN_OUTCOMES = {
    "complete": JobStatus.COMPLETED,
    "fail": JobStatus.FAILED,
    "retry": JobStatus.COMPLETED,  # on its second attempt
    "reschedule": JobStatus.COMPLETED,
    "cancel": JobStatus.CANCELLED,
    "fanout": JobStatus.COMPLETED,  # once its children have
}


def enqueue_wait_then() -> list[str]:
    """One ``test_wait_then`` job per outcome (in ``WAIT_THEN_OUTCOMES`` order); their ids."""
    rows = [
        build_job(
            job_type="test-wait-then",
            queue="maintenance",
            actor="test_wait_then",
            arguments={"queue": "maintenance", "outcome": outcome},
        )
        for outcome in WAIT_THEN_OUTCOMES
    ]
    for row in rows:
        row.max_attempts = 2  # the "retry" one gets its second attempt
    with transaction.atomic():
        jobs = create_jobs(rows)
    return [str(job.id) for job in jobs]
