"""The job state machine: every change of a Job row's status happens here.

``jobs.models.Job`` draws the diagram; each function below is one arrow of
it, written as a conditional ``UPDATE ... WHERE status = ...`` so that a late
progress write or a duplicate message never overwrites a final state. The
two hot writes (claim, completion) go through the worker's state writer
(``jobs.state.writer``), which batches them; the others are single
statements. Each announces itself to ``jobs.state.events`` once it commits.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.db.models.functions import Greatest
from django.utils import timezone

from jobs.core.enums import (
    ACTIVE_STATUSES,
    RETRYABLE_STATUSES,
    TERMINAL_STATUSES,
    WAITING_STATUSES,
    JobStatus,
    RunHolder,
    StopReason,
)
from jobs.core.exceptions import JobNotCancellable, JobNotRetryable
from jobs.models import Job, JobAttempt
from jobs.state import events
from jobs.state.batch import Claim, Completion
from jobs.state.writer import state_writer

logger = logging.getLogger(__name__)


def _execute(sql: str, params: list[Any]) -> bool:
    """Run one plain-SQL write (grouped with others in a worker process); True when it changed a row."""

    def run() -> bool:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return bool(cursor.rowcount)

    return bool(state_writer.write(run))


def _prep_id(job_id: str) -> Any:
    return Job._meta.pk.get_db_prep_value(job_id, connection)  # type: ignore[union-attr]


def _prep_time(value: datetime) -> Any:
    return connection.ops.adapt_datetimefield_value(value)


def _prep_json(field_name: str, value: Any) -> Any:
    return Job._meta.get_field(field_name).get_db_prep_value(value, connection)  # type: ignore[union-attr]


def bounded(text: str, limit: int) -> str:
    """Text cut to ``limit`` characters, keeping the end: that is where a traceback's error is."""
    if len(text) <= limit:
        return text
    return "…" + text[-(limit - 1) :]


# -- transitions used by workers (by id: the hot path reads no row) --------
def claim(job_id: str, expected_attempts: int, worker_id: str) -> bool:
    """Start an attempt: only a waiting job whose attempt count matches the message."""
    return bool(state_writer.write(Claim(job_id, expected_attempts, worker_id)))


def take_over(job_id: str, dead_worker_id: str, worker_id: str) -> bool:
    """Run again a job whose worker died while running it (its message was redelivered)."""
    now = timezone.now()
    with transaction.atomic():
        updated = Job.objects.filter(id=job_id, status=JobStatus.ACTIVE, worker_id=dead_worker_id).update(
            attempts=F("attempts") + 1, worker_id=worker_id, started_at=now, updated_at=now
        )
        if updated:
            record_attempt(job_id, outcome=JobAttempt.Outcome.WORKER_LOST, worker_id=dead_worker_id)
    return bool(updated)


def record_progress(job_id: str, percent: int, data: dict[str, Any]) -> bool:
    """Write progress; False when the job is no longer running or a cancel was asked."""
    return _execute(
        # The table name comes from the model; values are parameters.
        f"UPDATE {Job._meta.db_table} SET progress = %s, progress_data = %s, updated_at = %s "  # noqa: S608
        "WHERE id = %s AND status = %s AND cancel_requested_at IS NULL",
        [
            max(0, min(100, int(percent))),
            _prep_json("progress_data", data),
            _prep_time(timezone.now()),
            _prep_id(job_id),
            JobStatus.ACTIVE,
        ],
    )


def mark_completed(job_id: str, worker_id: str, result: Any, progress_data: dict[str, Any] | None = None) -> bool:
    """Finish a run; ``progress_data`` carries a last progress report that was not written yet."""
    return bool(state_writer.write(Completion(job_id, worker_id, result, progress_data)))


def mark_completed_later(
    job_id: str,
    worker_id: str,
    result: Any,
    progress_data: dict[str, Any] | None,
    *,
    on_committed: Callable[[], None],
) -> None:
    """``mark_completed`` without waiting: ``on_committed`` runs once it is durable.

    If the write fails for good, ``on_committed`` never runs: the message
    stays unacknowledged and is redelivered once this worker is gone,
    rather than acknowledged for a job whose row still says ``active``.
    """

    def done(_result: Any, error: BaseException | None) -> None:
        if error is None:
            on_committed()
        else:
            logger.error("Job %s finished but its completion could not be written: %s", job_id, error)

    state_writer.write_later(Completion(job_id, worker_id, result, progress_data), done)


def mark_retrying(job_id: str, worker_id: str, error: str, tb: str, next_attempt_at: datetime) -> bool:
    now = timezone.now()
    with transaction.atomic():
        updated = Job.objects.filter(id=job_id, status=JobStatus.ACTIVE, worker_id=worker_id).update(
            status=JobStatus.RETRYING,
            error_message=bounded(error, settings.JOBS_ERROR_MAX_CHARS),
            traceback=bounded(tb, settings.JOBS_TRACEBACK_MAX_CHARS),
            next_attempt_at=next_attempt_at,
            updated_at=now,
        )
        if updated:
            record_attempt(job_id, outcome=JobAttempt.Outcome.FAILED, worker_id=worker_id, error=error)
            events.publish_status(job_id, JobStatus.RETRYING, error=error)
    return bool(updated)


def mark_failed(job_id: str, error: str, tb: str = "", *, worker_id: str | None = None) -> bool:
    """Fail a running job (or, with no worker, any unfinished one: actor gone, lost for good)."""
    now = timezone.now()
    query = Job.objects.filter(id=job_id)
    if worker_id is not None:
        query = query.filter(status=JobStatus.ACTIVE, worker_id=worker_id)
    else:
        query = query.filter(status__in=ACTIVE_STATUSES)
    with transaction.atomic():
        updated = query.update(
            status=JobStatus.FAILED,
            error_message=bounded(error, settings.JOBS_ERROR_MAX_CHARS),
            traceback=bounded(tb, settings.JOBS_TRACEBACK_MAX_CHARS),
            finished_at=now,
            updated_at=now,
        )
        if updated:
            record_attempt(job_id, outcome=JobAttempt.Outcome.FAILED, worker_id=worker_id or "", error=error)
            events.publish_status(job_id, JobStatus.FAILED, error=error)
    return bool(updated)


def mark_cancelled(
    job_id: str, reason: str = JobStatus.CANCELLED.value, *, from_statuses: tuple[str, ...] = ACTIVE_STATUSES
) -> bool:
    now = timezone.now()
    with transaction.atomic():
        updated = Job.objects.filter(id=job_id, status__in=from_statuses).update(
            status=JobStatus.CANCELLED, error_message=reason, finished_at=now, updated_at=now
        )
        if updated:
            record_attempt(job_id, outcome=JobAttempt.Outcome.CANCELLED, error=reason)
            events.publish_status(job_id, JobStatus.CANCELLED, error=reason)
    return bool(updated)


def reschedule(job_id: str, worker_id: str, run_at: datetime, reason: str) -> bool:
    """Put a running job back to wait until ``run_at``; the attempt does not count."""
    now = timezone.now()
    updated = Job.objects.filter(id=job_id, status=JobStatus.ACTIVE, worker_id=worker_id).update(
        status=JobStatus.SCHEDULED,
        attempts=F("attempts") - 1,
        worker_id="",
        scheduled_for=run_at,
        progress_data={"message": reason},
        updated_at=now,
    )
    if updated:
        events.publish_status(job_id, JobStatus.SCHEDULED, data={"message": reason})
    return bool(updated)


def requeue_after_shutdown(job_id: str, worker_id: str) -> bool:
    """Give back a job interrupted by a worker shutdown; the attempt does not count."""
    now = timezone.now()
    updated = Job.objects.filter(id=job_id, status=JobStatus.ACTIVE, worker_id=worker_id).update(
        status=JobStatus.QUEUED,
        attempts=F("attempts") - 1,
        worker_id="",
        progress=0,
        updated_at=now,
    )
    if updated:
        events.publish_status(job_id, JobStatus.QUEUED, progress=0)
    return bool(updated)


def requeue_lost(job_id: str, dead_worker_id: str) -> bool:
    """A running job whose worker died and whose message Redis lost: run it again."""
    now = timezone.now()
    with transaction.atomic():
        updated = Job.objects.filter(id=job_id, status=JobStatus.ACTIVE, worker_id=dead_worker_id).update(
            status=JobStatus.QUEUED, worker_id="", updated_at=now
        )
        if updated:
            record_attempt(job_id, outcome=JobAttempt.Outcome.WORKER_LOST, worker_id=dead_worker_id)
            events.publish_status(job_id, JobStatus.QUEUED)
    return bool(updated)


# -- fan-out: a parent that waits for its children -------------------
def await_children(job_id: str, worker_id: str, percent: int, data: dict[str, Any]) -> bool:
    """The parent's own run is over; it stays active until its children finish."""
    updated = Job.objects.filter(id=job_id, status=JobStatus.ACTIVE, worker_id=worker_id).update(
        worker_id=RunHolder.AWAITING_CHILDREN, progress=percent, progress_data=data, updated_at=timezone.now()
    )
    if updated:
        events.publish_progress_on_commit(job_id, percent, data)
    return bool(updated)


def record_parent_progress(job_id: str, percent: int, data: dict[str, Any]) -> bool:
    """Progress of a parent waiting for (or being finished by) its children; it never goes back."""
    query = Job.objects.filter(
        id=job_id, status=JobStatus.ACTIVE, worker_id__in=(RunHolder.AWAITING_CHILDREN, RunHolder.FINALIZING)
    )
    done = (data.get("fanout") or {}).get("done")
    if isinstance(done, int):
        # Two children finishing together each count the finished ones: the
        # count taken first may commit last, and must not undo the other's.
        query = query.filter(Q(progress_data__fanout__done__isnull=True) | Q(progress_data__fanout__done__lte=done))
    updated = query.update(
        progress=Greatest(F("progress"), max(0, min(100, int(percent)))),
        progress_data=data,
        updated_at=timezone.now(),
    )
    if updated:
        events.publish_progress_on_commit(job_id, percent, data)
    return bool(updated)


def claim_finalization(job_id: str) -> bool:
    """Exactly one finishing child gets to finish the parent."""
    return bool(
        Job.objects.filter(id=job_id, status=JobStatus.ACTIVE, worker_id=RunHolder.AWAITING_CHILDREN).update(
            worker_id=RunHolder.FINALIZING, updated_at=timezone.now()
        )
    )


def finish_parent(job_id: str, *, result: Any = None, failed: str = "", tb: str = "") -> bool:
    now = timezone.now()
    query = Job.objects.filter(id=job_id, status=JobStatus.ACTIVE, worker_id=RunHolder.FINALIZING)
    if failed:
        updated = query.update(
            status=JobStatus.FAILED,
            error_message=bounded(failed, settings.JOBS_ERROR_MAX_CHARS),
            traceback=bounded(tb, settings.JOBS_TRACEBACK_MAX_CHARS),
            finished_at=now,
            updated_at=now,
        )
        if updated:
            events.publish_status(job_id, JobStatus.FAILED, error=failed)
        return bool(updated)
    updated = query.update(status=JobStatus.COMPLETED, progress=100, result=result, finished_at=now, updated_at=now)
    if updated:
        events.publish_status(job_id, JobStatus.COMPLETED, progress=100)
    return bool(updated)


def mark_sent_scheduled(job_id: str) -> None:
    """Touch a scheduled job whose message went to Redis, so the reconciler waits its grace."""
    Job.objects.filter(id=job_id, status=JobStatus.SCHEDULED).update(updated_at=timezone.now())


# -- transitions asked for by people --------------------------------
def request_cancel(job: Job) -> bool:
    """Cancel now if waiting; if running, flag it so it stops at its next progress call.

    Returns True when the job is already cancelled on return.
    """
    if job.status in TERMINAL_STATUSES:
        raise JobNotCancellable(f"job is {job.status}")
    if mark_cancelled(str(job.id), StopReason.CANCELLED_BEFORE_RUN, from_statuses=WAITING_STATUSES):
        job.refresh_from_db()
        return True
    if (
        job.worker_id == RunHolder.AWAITING_CHILDREN
        and Job.objects.filter(id=job.id, status=JobStatus.ACTIVE, worker_id=RunHolder.AWAITING_CHILDREN).exists()
    ):
        # No worker runs a parent waiting for its children: cancel it here.
        mark_cancelled(str(job.id), StopReason.CANCELLED_WITH_CHILDREN)
        job.refresh_from_db()
        return True
    # Running (or just claimed): ask its worker to stop it.
    now = timezone.now()
    Job.objects.filter(id=job.id, status=JobStatus.ACTIVE, cancel_requested_at__isnull=True).update(
        cancel_requested_at=now, updated_at=now
    )
    job.refresh_from_db()
    return job.status == JobStatus.CANCELLED


def retry(job: Job, extra_attempts: int) -> None:
    """Send a failed or cancelled job again under the same id; its attempt history stays."""
    now = timezone.now()
    updated = Job.objects.filter(id=job.id, status__in=RETRYABLE_STATUSES).update(
        status=JobStatus.QUEUED,
        progress=0,
        progress_data={},
        result=None,
        error_message="",
        traceback="",
        worker_id="",
        cancel_requested_at=None,
        started_at=None,
        finished_at=None,
        next_attempt_at=None,
        max_attempts=F("attempts") + extra_attempts,
        updated_at=now,
    )
    if not updated:
        job.refresh_from_db()
        raise JobNotRetryable(f"only failed or cancelled jobs can be retried; this one is {job.status}")
    job.refresh_from_db()
    events.publish_status(job.id, JobStatus.QUEUED, progress=0, data={}, owner_id=job.owner_id, owner_known=True)


def record_attempt(job_id: str, *, outcome: str, worker_id: str = "", error: str = "") -> None:
    row = Job.objects.filter(id=job_id).values("attempts", "started_at").first()
    if row is None:
        return
    JobAttempt.objects.create(
        job_id=job_id,
        number=row["attempts"],
        outcome=outcome,
        worker_id=worker_id,
        error=bounded(error, settings.JOBS_ERROR_MAX_CHARS),
        started_at=row["started_at"],
    )
