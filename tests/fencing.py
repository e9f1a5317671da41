"""A run whose job was taken over, for the domain apps' fencing tests (issue 17).

``taken_over(job_type, queue)`` records a job that attempt 2 holds on worker
"new"; ``running_as(job, attempt, worker)`` makes this thread that job's run
at another attempt (the stale one: attempt 1 on worker "old"), as the
worker's mirror would.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from jobs.core.context import RunningJob, set_current_job
from jobs.dispatch.services import build_job, create_jobs
from jobs.models import Job, JobStatus

STALE = (1, "old")
HOLDER = (2, "new")


def taken_over(job_type: str, queue: str, actor: str = "test", **arguments: object) -> Job:
    """An active job at attempt 2 on worker "new": its attempt 1 (worker "old") was taken over."""
    job = create_jobs([build_job(job_type=job_type, queue=queue, actor=actor, arguments=dict(arguments))])[0]
    Job.objects.filter(id=job.id).update(status=JobStatus.ACTIVE, attempts=HOLDER[0], worker_id=HOLDER[1])
    job.refresh_from_db()
    return job


@contextmanager
def running_as(job: Job, attempt: int, worker_id: str, *, parent_id: str | None = None) -> Iterator[RunningJob]:
    """This thread runs ``job`` at ``attempt`` on ``worker_id`` for the block."""
    running = RunningJob(
        job_id=str(job.id),
        job_type=job.type,
        queue=job.queue,
        thread_id=threading.get_ident(),
        time_limit_s=None,
        parent_id=parent_id,
        attempt=attempt,
        worker_id=worker_id,
    )
    set_current_job(running)
    try:
        yield running
    finally:
        set_current_job(None)
