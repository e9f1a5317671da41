"""The job service: record a job, send it after commit, cancel it, retry it.

Everything here runs without a worker; only ``send_job`` talks to Redis, and
a failure there never loses a job: the reconciler sends what Redis lacks.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import dramatiq
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import QuerySet
from django.utils import timezone
from dramatiq.common import current_millis
from dramatiq.message import Message

from jobs.core.clock import database_now
from jobs.core.context import current_job
from jobs.core.messages import ATTEMPT, COST, JOB_TYPE, MAX_ATTEMPTS, OWNER, PARENT, PRIORITY, WEIGHT
from jobs.core.origin import SYSTEM, AuditAction, JobOrigin, Origin
from jobs.core.queues import get_queue
from jobs.dispatch import backpressure
from jobs.dispatch.estimates import estimate_duration_s
from jobs.dispatch.fairness import job_cost, owner_bucket, weight_of
from jobs.dispatch.outcomes import child_finished, deliver_after_commit, request_cancel_hook
from jobs.dispatch.registry import JobPlan, JobType, origin_for
from jobs.models import Job, JobPriority, JobStatus
from jobs.state import events, transitions
from jobs.state.audit import record_audit

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EnqueueResult:
    job: Job
    created: bool


def _is_due_soon(when: datetime | None) -> bool:
    return when is None or when <= timezone.now() + timedelta(seconds=settings.JOBS_DELAY_HORIZON_S)


def build_job(
    *,
    job_type: str,
    queue: str,
    actor: str,
    arguments: dict[str, Any],
    owner: Any = None,
    priority: str = JobPriority.NORMAL,
    schedule_at: datetime | None = None,
    parent: Job | None = None,
    estimated_duration_s: float | None = None,
    idempotency_key: str | None = None,
    origin: Origin | None = None,
) -> Job:
    """A Job row, unsaved, with its attempts and status set from the queue table.

    Its door (``created_via``/``created_by``) is ``origin``, else its parent's (a child is started
    by whoever started the parent); whose work it is (``Job.origin``) follows from its type, its
    parent and that door (``origin_for``).
    """
    policy = get_queue(queue)
    if origin is None:
        via, by = (parent.created_via, parent.created_by) if parent is not None else (SYSTEM.via, SYSTEM.by)
    else:
        via, by = origin.via, origin.by
    in_future = schedule_at is not None and schedule_at > timezone.now()
    return Job(
        type=job_type,
        queue=queue,
        actor=actor,
        arguments=arguments,
        owner=owner if getattr(owner, "is_authenticated", False) else None,
        priority=priority,
        status=JobStatus.SCHEDULED if in_future else JobStatus.QUEUED,
        scheduled_for=schedule_at if in_future else None,
        parent=parent,
        max_attempts=policy.max_attempts,
        estimated_duration_s=estimated_duration_s,
        idempotency_key=idempotency_key,
        created_via=via,
        created_by=by,
        origin=_job_origin(job_type, parent, via),
    )


#: Origins that pass to the jobs a running job starts (not as fan-out children): work that
#: system work starts (thumbnail maintenance's thumbnails jobs) is system work too.
_INHERITED_ORIGINS = (JobOrigin.SCHEDULE, JobOrigin.CANARY, JobOrigin.MAINTENANCE)


def _job_origin(job_type: str, parent: Job | None, via: str) -> JobOrigin:
    origin = origin_for(job_type, has_parent=parent is not None, via=via)
    running = current_job()
    if origin != JobOrigin.CUSTOMER or running is None:
        return origin
    starter = Job.objects.filter(id=running.job_id).values_list("origin", flat=True).first()
    return JobOrigin(starter) if starter in _INHERITED_ORIGINS else origin


def create_jobs(jobs: list[Job]) -> list[Job]:
    """Save jobs and send them once the surrounding transaction commits."""
    if len(jobs) == 1:
        jobs[0].save(force_insert=True)
    else:
        Job.objects.bulk_create(jobs, batch_size=500)
    events.publish_created(jobs)
    due = [job for job in jobs if _is_due_soon(job.scheduled_for)]
    if due:
        transaction.on_commit(lambda: send_jobs(due))
    return jobs


def message_for(job: Job) -> Message[Any]:
    options: dict[str, Any] = {
        JOB_TYPE: job.type,
        ATTEMPT: job.attempts,
        MAX_ATTEMPTS: job.max_attempts,
        PRIORITY: job.priority,
        OWNER: owner_bucket(job),
        WEIGHT: weight_of(job.owner_id),
        COST: job_cost(job),
    }
    if job.parent_id:
        options[PARENT] = str(job.parent_id)
    return Message(
        queue_name=job.queue,
        actor_name=job.actor,
        args=(),
        kwargs=job.arguments,
        options=options,
        message_id=str(job.id),
        message_timestamp=current_millis(),
    )


def send_job(job: Job, now: datetime | None = None) -> bool:
    """Put a job's message on Redis; False (logged) when Redis is unreachable.

    A delayed job's remaining delay is counted from ``now``, the database's
    time by default: ``scheduled_for`` is the database's time too (see
    ``jobs.core.clock``), and this host's clock may be off.
    """
    delay: int | None = None
    try:
        if job.scheduled_for is not None:
            remaining = int((job.scheduled_for - (now or database_now())).total_seconds() * 1000)
            delay = remaining if remaining > 0 else None
        dramatiq.get_broker().enqueue(message_for(job), delay=delay)
    except Exception:
        logger.warning("Could not send job %s; the reconciler will send it later", job.id, exc_info=True)
        return False
    if job.status == JobStatus.SCHEDULED:
        transitions.mark_sent_scheduled(str(job.id))
    return True


def send_jobs(jobs: Iterable[Job]) -> int:
    """Send many jobs: those due now in pipelined batches, delayed ones one by one."""
    now_due: list[Job] = []
    sent = 0
    now: datetime | None = None
    for job in jobs:
        if job.scheduled_for is not None:
            now = now or database_now()
            sent += send_job(job, now)
        else:
            now_due.append(job)
    broker = dramatiq.get_broker()
    enqueue_many = getattr(broker, "enqueue_many", None)
    for start in range(0, len(now_due), 500):
        chunk = now_due[start : start + 500]
        if enqueue_many is None:
            sent += sum(1 for job in chunk if send_job(job))
            continue
        try:
            enqueue_many([message_for(job) for job in chunk])
            sent += len(chunk)
        except Exception:
            logger.warning("Could not send %d jobs; the reconciler will send them later", len(chunk), exc_info=True)
    return sent


def start_job(
    job_type: JobType,
    user: Any,
    data: dict[str, Any],
    idempotency_key: str | None = None,
    origin: Origin = SYSTEM,
) -> EnqueueResult:
    """Start a job of a registered type for a user, idempotently when a key is given.

    ``origin`` is recorded on the job (how it was started, and by whom).
    """
    if idempotency_key:
        existing = _idempotent_match(user, idempotency_key)
        if existing is not None:
            return EnqueueResult(existing, created=False)
    try:
        job = None
        plan_statements = _StatementCounter()
        with transaction.atomic():
            with connection.execute_wrapper(plan_statements):
                plan = job_type.plan(user, data)
            if plan.existing_job is not None:
                return EnqueueResult(plan.existing_job, created=False)
            if plan_statements.count or plan.on_created is not None:
                job = _record(job_type, plan, user, idempotency_key, origin)
        if job is None:
            # The plan only validated (no statement ran, so no transaction
            # began): the Job row is the one write, and one INSERT in
            # autocommit is its own transaction. That is one round trip to
            # the database instead of three (BEGIN, INSERT, COMMIT). In a
            # caller's transaction it still commits, or not, with the caller's.
            job = _record(job_type, plan, user, idempotency_key, origin)
    except IntegrityError:
        # Two requests with the same key raced: the first one's job is the answer.
        existing = _idempotent_match(user, idempotency_key) if idempotency_key else None
        if existing is None:
            raise
        return EnqueueResult(existing, created=False)
    return EnqueueResult(job, created=True)


def _record(job_type: JobType, plan: JobPlan, user: Any, idempotency_key: str | None, origin: Origin) -> Job:
    """Save the planned job (it is sent once the surrounding transaction commits).

    A customer's request is checked against the backpressure limits here, and only here: after an
    idempotent replay or a plan's ``existing_job`` was answered, before anything is written
    (a refusal inside the plan's transaction rolls its domain rows back). Jobs that code creates
    through ``build_job``/``create_jobs`` (children, an upload's thumbnails) are never checked.
    """
    backpressure.admit(job_type, user, origin, queue=plan.queue or job_type.queue)
    job = build_job(
        job_type=job_type.name,
        queue=plan.queue or job_type.queue,
        actor=plan.actor or job_type.actor,
        arguments=plan.arguments,
        owner=user,
        priority=plan.priority,
        schedule_at=plan.schedule_at,
        estimated_duration_s=plan.estimated_duration_s or estimate_duration_s(job_type.name),
        idempotency_key=idempotency_key or None,
        origin=origin,
    )
    if plan.initial_data:
        job.progress_data = dict(plan.initial_data)
    create_jobs([job])
    if plan.on_created is not None:
        plan.on_created(job)
    return job


class _StatementCounter:
    """A database execute wrapper that counts the statements run through it."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: dict[str, Any]) -> Any:
        self.count += 1
        return execute(sql, params, many, context)


def _idempotent_match(user: Any, key: str) -> Job | None:
    job = Job.objects.filter(owner=user, idempotency_key=key).first()
    if job is None:
        return None
    if job.created_at < timezone.now() - timedelta(seconds=settings.JOBS_IDEMPOTENCY_TTL_S):
        # The key has expired: free it for the new request.
        Job.objects.filter(id=job.id).update(idempotency_key=None)
        return None
    return job


def cancel_job(job: Job, origin: Origin | None = None) -> Job:
    """Cancel a job (waiting: at once; running: at its next progress call) and its children.

    With an ``origin`` (a person or command asked), the audit trail records it.
    """
    transitions.request_cancel(job)
    if origin is not None:
        record_audit(AuditAction.CANCEL, origin, "job", job.pk, {"type": job.type})
    for child in job.children.filter(
        status__in=(JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.RETRYING, JobStatus.ACTIVE)
    ):
        transitions.request_cancel(child)
    job.refresh_from_db()
    if job.parent_id and job.status == JobStatus.CANCELLED:
        # A child cancelled on its own still counts as finished for its parent.
        child_finished(str(job.parent_id))
    request_cancel_hook(str(job.pk))
    if job.status == JobStatus.CANCELLED:
        deliver_after_commit(str(job.pk))
    return job


def delete_finished_jobs(jobs: QuerySet[Job]) -> int:
    """Delete finished jobs (and their children); the statistics keep counting them. Returns how many."""
    return transitions.delete_finished(jobs)


def retry_job(job: Job, origin: Origin | None = None) -> Job:
    """Send a failed or cancelled job again under the same id (audited when ``origin`` is given)."""
    transitions.retry(job, extra_attempts=get_queue(job.queue).max_attempts)
    if origin is not None:
        record_audit(AuditAction.RETRY, origin, "job", job.pk, {"type": job.type})
    if _is_due_soon(job.scheduled_for):
        transaction.on_commit(lambda: send_job(job))
    return job
