"""Fencing: a run writes only while it still holds its job.

A claim gives the run a fencing token: the attempt it started and the worker
(Dramatiq broker id) that holds it, both kept on the Job row. A worker cut off
from Redis past the heartbeat timeout, or frozen, is taken for dead and its
job is taken over by another worker (``attempts + 1``, another ``worker_id``);
when the stale run wakes up, every write it makes carries its token and is
refused: progress, completion, failure (``jobs.state.transitions``) and the
domain's own writes, which go through ``fenced()``. The run is then stopped
(``RunSuperseded``) at its next progress call or by the watchdog.

``fenced()`` opens a transaction that first locks the job's row (``FOR
SHARE``) and checks the token: a take-over, which updates that row, waits for
the domain write to commit, or the write sees the take-over and is refused.
Either way the stale run's write never lands after the take-over.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.db import connection, transaction

from jobs.core.context import RunningJob, current_job
from jobs.core.enums import JobStatus
from jobs.core.exceptions import RunSuperseded
from jobs.models import Job


@dataclass(frozen=True)
class Fence:
    """A run's fencing token."""

    job_id: str
    attempt: int
    worker_id: str

    @classmethod
    def of(cls, job: RunningJob) -> Fence:
        return cls(job.job_id, job.attempt, job.worker_id)

    def __str__(self) -> str:
        # Short enough for a 64-character column: "<job uuid>:<attempt>".
        return f"{self.job_id}:{self.attempt}"


def current_fence() -> Fence | None:
    """The token of the run on this thread, or None outside a run (a shell, a rerun command, a test)."""
    job = current_job()
    return Fence.of(job) if job is not None and job.attempt else None


def holds(fence: Fence, *, lock: bool = False) -> bool:
    """Whether ``fence`` still holds its job: active, at its attempt, under its worker.

    With ``lock`` (inside a transaction), the row stays share-locked until it
    commits, so no take-over can slip in between the check and the writes.
    """
    if lock and connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                # The table name comes from the model; values are parameters.
                f"SELECT 1 FROM {Job._meta.db_table} WHERE id = %s AND status = %s "  # noqa: S608
                "AND attempts = %s AND worker_id = %s FOR SHARE",
                [fence.job_id, JobStatus.ACTIVE.value, fence.attempt, fence.worker_id],
            )
            return cursor.fetchone() is not None
    return Job.objects.filter(
        id=fence.job_id, status=JobStatus.ACTIVE, attempts=fence.attempt, worker_id=fence.worker_id
    ).exists()


@contextmanager
def fenced() -> Iterator[Fence | None]:
    """A transaction for a run's domain writes that commits only while the run holds its job.

    Raises ``RunSuperseded`` (before anything is written) when another run
    has taken the job over. Outside a run it is a plain transaction.
    """
    fence = current_fence()
    with transaction.atomic():
        if fence is not None and not holds(fence, lock=True):
            raise RunSuperseded(f"job {fence.job_id} attempt {fence.attempt} was taken over by another worker")
        yield fence


def token_is_current(token: str) -> bool:
    """Whether the run that wrote ``token`` (``str(Fence)``) still holds its job, by job id and attempt."""
    job_id, _, attempt = token.rpartition(":")
    if not job_id or not attempt.isdigit():
        return False
    return Job.objects.filter(id=job_id, status=JobStatus.ACTIVE, attempts=int(attempt)).exists()
