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
import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.db.models.functions import Greatest, Now
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
from jobs.models import Job, JobAttempt, JobStatsCarry
from jobs.state import events
from jobs.state.batch import Claim, Completion
from jobs.state.writer import is_unreachable, state_writer

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
#
# Each write a run makes carries its fencing token (``attempt`` and ``worker_id``,
# ``jobs.state.fencing``): a run whose job was taken over writes nothing.
# Each runs in one transaction through the state writer, which retries it
# while the database is unreachable; ``applied`` tells, when the change finds
# no row, whether it had already committed (the reply to an earlier try was
# lost), so that the caller's next step (send the retry, tell the parent)
# still happens. Times are the database's clock (``Now()``): hosts' clocks
# may disagree.


def _in_writer(change: Callable[[], int], applied: Callable[[], bool] | None = None) -> bool:
    def run() -> bool:
        with transaction.atomic():
            if change():
                return True
        return bool(applied is not None and applied())

    return bool(state_writer.write(run))


def _row(job_id: str, **conditions: Any) -> bool:
    return Job.objects.filter(id=job_id, **conditions).exists()


def claim(job_id: str, expected_attempts: int, worker_id: str, message_id: str = "") -> bool:
    """Start an attempt: only a waiting job whose attempt count matches the message."""
    return bool(state_writer.write(Claim(job_id, expected_attempts, worker_id, message_id)))


def take_over(job_id: str, dead_worker_id: str, worker_id: str, attempts: int) -> bool:
    """Run again a job whose worker died while running it (its message was redelivered)."""

    def change() -> int:
        lost = Job.objects.filter(id=job_id, status=JobStatus.ACTIVE, worker_id=dead_worker_id, attempts=attempts)
        started = lost.values_list("started_at", flat=True).first()
        updated = lost.update(
            attempts=F("attempts") + 1, worker_id=worker_id, progress=0, started_at=Now(), updated_at=Now()
        )
        if updated:
            # The attempt that was lost, with its own start (the row now holds the new one's).
            JobAttempt.objects.create(
                job_id=job_id,
                number=attempts,
                outcome=JobAttempt.Outcome.WORKER_LOST,
                worker_id=dead_worker_id,
                started_at=started,
            )
        return updated

    return _in_writer(change, lambda: _row(job_id, status=JobStatus.ACTIVE, worker_id=worker_id, attempts=attempts + 1))


def record_progress(job_id: str, percent: int, data: dict[str, Any], *, attempt: int = 0, worker_id: str = "") -> bool:
    """Write progress; False when the job is no longer this run's, or a cancel was asked.

    With a fencing token (``attempt``, ``worker_id``) only that run's progress
    is written: a stale run's late report must not move the new run's back.
    """
    fence_sql = " AND attempts = %s AND worker_id = %s" if attempt else ""
    fence = [attempt, worker_id] if attempt else []
    now = [] if connection.vendor == "postgresql" else [_prep_time(timezone.now())]
    return _execute(
        # The table name comes from the model; values are parameters.
        f"UPDATE {Job._meta.db_table} SET progress = %s, progress_data = %s, updated_at = {_now_sql()} "  # noqa: S608
        f"WHERE id = %s AND status = %s AND cancel_requested_at IS NULL{fence_sql}",
        [
            max(0, min(100, int(percent))),
            _prep_json("progress_data", data),
            *now,
            _prep_id(job_id),
            JobStatus.ACTIVE,
            *fence,
        ],
    )


def _now_sql() -> str:
    """The database's clock in a plain-SQL write (SQLite, the one-host default, has no other to agree with)."""
    return "now()" if connection.vendor == "postgresql" else "%s"


def holds_run(job_id: str, attempt: int, worker_id: str) -> bool:
    """Whether the run with this fencing token still holds its job."""
    return _row(job_id, status=JobStatus.ACTIVE, attempts=attempt, worker_id=worker_id)


def mark_completed(
    job_id: str, worker_id: str, result: Any, progress_data: dict[str, Any] | None = None, *, attempt: int
) -> bool:
    """Finish a run; ``progress_data`` carries a last progress report that was not written yet."""
    return bool(state_writer.write(Completion(job_id, worker_id, result, progress_data, attempt)))


def mark_completed_later(
    job_id: str,
    worker_id: str,
    result: Any,
    progress_data: dict[str, Any] | None,
    *,
    attempt: int,
    on_committed: Callable[[], None],
) -> None:
    """``mark_completed`` without waiting: ``on_committed`` runs once it is durable.

    While the database stays unreachable the write is handed back to the
    writer again and again (the writer itself gives up after
    ``JOBS_STATE_WRITE_RETRY_S``): the message is acknowledged only once the
    completion is durable, and a job whose run finished must not stay
    ``active`` under a live worker. A write refused for good (the run was
    taken over) acknowledges the message: the job is another run's now.
    """
    completion = Completion(job_id, worker_id, result, progress_data, attempt)

    def done(_result: Any, error: BaseException | None) -> None:
        if error is None:
            on_committed()
        elif is_unreachable(error):
            logger.error("Job %s finished but the database is away; retrying its completion", job_id)
            timer = threading.Timer(1.0, state_writer.write_later, (completion, done))
            timer.daemon = True
            timer.start()
        else:
            logger.error("Job %s finished but its completion could not be written: %s", job_id, error)

    state_writer.write_later(completion, done)


def mark_retrying(job_id: str, worker_id: str, error: str, tb: str, delay_ms: int, *, attempt: int) -> bool:
    mine = {"worker_id": worker_id, "attempts": attempt}

    def change() -> int:
        updated = Job.objects.filter(id=job_id, status=JobStatus.ACTIVE, **mine).update(
            status=JobStatus.RETRYING,
            error_message=bounded(error, settings.JOBS_ERROR_MAX_CHARS),
            traceback=bounded(tb, settings.JOBS_TRACEBACK_MAX_CHARS),
            next_attempt_at=Now() + timedelta(milliseconds=delay_ms),
            updated_at=Now(),
        )
        if updated:
            record_attempt(job_id, outcome=JobAttempt.Outcome.FAILED, worker_id=worker_id, error=error)
            events.publish_status(job_id, JobStatus.RETRYING, error=error)
        return updated

    return _in_writer(change, lambda: _row(job_id, status=JobStatus.RETRYING, **mine))


def mark_failed(
    job_id: str, error: str, tb: str = "", *, worker_id: str | None = None, attempt: int | None = None
) -> bool:
    """Fail a running job (or, with no worker, any unfinished one: actor gone, lost for good)."""
    query = Job.objects.filter(id=job_id)
    mine: dict[str, Any] = {}
    if worker_id is not None:
        mine = {"worker_id": worker_id, **({"attempts": attempt} if attempt is not None else {})}
        query = query.filter(status=JobStatus.ACTIVE, **mine)
    else:
        query = query.filter(status__in=ACTIVE_STATUSES)

    def change() -> int:
        updated = query.update(
            status=JobStatus.FAILED,
            error_message=bounded(error, settings.JOBS_ERROR_MAX_CHARS),
            traceback=bounded(tb, settings.JOBS_TRACEBACK_MAX_CHARS),
            finished_at=Now(),
            updated_at=Now(),
        )
        if updated:
            record_attempt(job_id, outcome=JobAttempt.Outcome.FAILED, worker_id=worker_id or "", error=error)
            events.publish_status(job_id, JobStatus.FAILED, error=error)
        return updated

    return _in_writer(change, (lambda: _row(job_id, status=JobStatus.FAILED, **mine)) if mine else None)


def mark_cancelled(
    job_id: str,
    reason: str = JobStatus.CANCELLED.value,
    *,
    from_statuses: tuple[str, ...] = ACTIVE_STATUSES,
    worker_id: str | None = None,
    attempt: int | None = None,
) -> bool:
    """Cancel a job; a run stopping itself passes its fencing token (a stale run cancels nothing)."""
    mine: dict[str, Any] = {}
    if worker_id is not None:
        mine = {"worker_id": worker_id, **({"attempts": attempt} if attempt is not None else {})}

    def change() -> int:
        updated = Job.objects.filter(id=job_id, status__in=from_statuses, **mine).update(
            status=JobStatus.CANCELLED, error_message=reason, finished_at=Now(), updated_at=Now()
        )
        if updated:
            record_attempt(job_id, outcome=JobAttempt.Outcome.CANCELLED, error=reason)
            events.publish_status(job_id, JobStatus.CANCELLED, error=reason)
        return updated

    return _in_writer(change, (lambda: _row(job_id, status=JobStatus.CANCELLED, **mine)) if mine else None)


def reschedule(job_id: str, worker_id: str, delay_s: float, reason: str, *, attempt: int, message_id: str) -> bool:
    """Put a running job back to wait ``delay_s``; the attempt does not count.

    ``run_message`` stays on the row, so that a write sent again after a
    lost reply can tell it had already committed.
    """

    def change() -> int:
        updated = Job.objects.filter(id=job_id, status=JobStatus.ACTIVE, worker_id=worker_id, attempts=attempt).update(
            status=JobStatus.SCHEDULED,
            attempts=F("attempts") - 1,
            worker_id="",
            scheduled_for=Now() + timedelta(seconds=delay_s),
            progress_data={"message": reason},
            updated_at=Now(),
        )
        if updated:
            events.publish_status(job_id, JobStatus.SCHEDULED, data={"message": reason})
        return updated

    return _in_writer(
        change, lambda: _row(job_id, status=JobStatus.SCHEDULED, run_message=message_id, attempts=attempt - 1)
    )


def requeue_after_shutdown(job_id: str, worker_id: str, attempt: int | None = None, message_id: str = "") -> bool:
    """Give back a job interrupted by a worker shutdown; the attempt does not count."""
    mine: dict[str, Any] = {"worker_id": worker_id, **({"attempts": attempt} if attempt is not None else {})}

    def change() -> int:
        updated = Job.objects.filter(id=job_id, status=JobStatus.ACTIVE, **mine).update(
            status=JobStatus.QUEUED, attempts=F("attempts") - 1, worker_id="", progress=0, updated_at=Now()
        )
        if updated:
            events.publish_status(job_id, JobStatus.QUEUED, progress=0)
        return updated

    applied = None
    if attempt is not None and message_id:

        def applied() -> bool:
            return _row(job_id, status=JobStatus.QUEUED, run_message=message_id, attempts=attempt - 1)

    return _in_writer(change, applied)


def requeue_lost(job_id: str, dead_worker_id: str) -> bool:
    """A running job whose worker died and whose message Redis lost: run it again."""
    with transaction.atomic():
        updated = Job.objects.filter(id=job_id, status=JobStatus.ACTIVE, worker_id=dead_worker_id).update(
            status=JobStatus.QUEUED, worker_id="", updated_at=Now()
        )
        if updated:
            record_attempt(job_id, outcome=JobAttempt.Outcome.WORKER_LOST, worker_id=dead_worker_id)
            events.publish_status(job_id, JobStatus.QUEUED)
    return bool(updated)


# -- fan-out: a parent that waits for its children -------------------
#: A child's priority before it is inserted: its parent's (a high-priority document's pages stay high).
INHERIT_PRIORITY = "inherit"


def await_children(
    job_id: str, worker_id: str, percent: int, data: dict[str, Any], *, attempt: int, children: Sequence[Job] = ()
) -> bool:
    """The parent's own run is over; it stays active until its children finish.

    The children's rows are inserted in the same transaction: a parent never
    waits for children that do not exist, and children never exist for a
    parent that does not wait for them.
    """

    def change() -> int:
        updated = Job.objects.filter(id=job_id, status=JobStatus.ACTIVE, worker_id=worker_id, attempts=attempt).update(
            worker_id=RunHolder.AWAITING_CHILDREN, progress=percent, progress_data=data, updated_at=Now()
        )
        if updated:
            if children:
                parent = Job.objects.only("owner_id", "priority", "created_via", "created_by").get(id=job_id)
                for child in children:
                    child.owner_id = parent.owner_id
                    child.created_via, child.created_by = parent.created_via, parent.created_by
                    if child.priority == INHERIT_PRIORITY:
                        child.priority = parent.priority
                Job.objects.bulk_create(children, batch_size=500)
            events.publish_progress_on_commit(job_id, percent, data)
        return updated

    def applied() -> bool:
        if children:
            return Job.objects.filter(id=children[0].pk, parent__id=job_id).exists()
        return _row(job_id, attempts=attempt, worker_id__in=(RunHolder.AWAITING_CHILDREN, RunHolder.FINALIZING))

    return _in_writer(change, applied)


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
        updated_at=Now(),
    )
    if updated:
        events.publish_progress_on_commit(job_id, percent, data)
    return bool(updated)


def claim_finalization(job_id: str) -> bool:
    """Exactly one finishing child gets to finish the parent."""
    return bool(
        Job.objects.filter(id=job_id, status=JobStatus.ACTIVE, worker_id=RunHolder.AWAITING_CHILDREN).update(
            worker_id=RunHolder.FINALIZING, updated_at=Now()
        )
    )


def finish_parent(job_id: str, *, result: Any = None, failed: str = "", tb: str = "") -> bool:
    now = Now()
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
    Job.objects.filter(id=job_id, status=JobStatus.SCHEDULED).update(updated_at=Now())


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
    """Send a failed or cancelled job again under the same id; its attempt history stays.

    Its finish stays counted (``JobStatsCarry``): the statistics and ``/metrics``' counters keep it.
    """
    now = timezone.now()
    with transaction.atomic():
        retryable = Job.objects.filter(id=job.id, status__in=RETRYABLE_STATUSES)
        JobStatsCarry.carry(retryable)
        updated = _reset_for_retry(retryable, extra_attempts, now)
    if not updated:
        job.refresh_from_db()
        raise JobNotRetryable(f"only failed or cancelled jobs can be retried; this one is {job.status}")
    job.refresh_from_db()
    events.publish_status(job.id, JobStatus.QUEUED, progress=0, data={}, owner_id=job.owner_id, owner_known=True)


def _reset_for_retry(retryable: Any, extra_attempts: int, now: datetime) -> int:
    return retryable.update(
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


def delete_finished(jobs: Any) -> int:
    """Delete finished jobs (their children go with them), keeping their finishes counted; returns how many.

    ``jobs`` are finished jobs none of whose children is still at work (the caller's check).
    """
    with transaction.atomic():
        ids = list(jobs.select_for_update().values_list("pk", flat=True))
        JobStatsCarry.carry(Job.objects.filter(pk__in=_with_descendants(ids)))
        Job.objects.filter(pk__in=ids).delete()
    return len(ids)


def _with_descendants(ids: list[Any]) -> list[Any]:
    """``ids`` and every job under them (the rows a delete cascades to)."""
    found, level = list(ids), list(ids)
    while level:
        level = list(Job.objects.filter(parent_id__in=level).values_list("pk", flat=True))
        found += level
    return found


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
