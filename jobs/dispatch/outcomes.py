"""How a job's final outcome reaches the domain app that owns its type: the hooks.

A job type may register four outcome hooks (``jobs.dispatch.registry.JobType``):

* ``on_finished(outcome)``: the job completed; ``outcome.result`` is what its
  actor (or its ``on_children_done`` step) returned;
* ``on_failed(outcome)``: it failed for good: a permanent error, its last
  attempt, its time limit, its actor gone, or its worker dying on every
  attempt. ``outcome.error`` is the readable reason;
* ``on_cancelled(outcome)``: it ended cancelled (before it ran, while it ran
  or while its children ran);
* ``on_cancel_requested(ref)``: someone asked to cancel it (the API, the
  admin, ``manage.py jobs cancel``), whether it was waiting (cancelled at
  once) or running (it stops at its next progress call). It runs at the
  request, so a campaign says "cancelled" as soon as its sender is asked to
  stop, before the running batch notices.

Each hook runs after the transaction that made the outcome final commits,
with the job's final row: never for a retry that is still to come. Hooks are
delivered **at least once**: a worker can die between the final commit and
the hook, so the reconciler asks each type for the jobs its domain rows still
wait on (``unsettled``) and delivers again the outcome of those that have
finished. Hooks must therefore be idempotent (a conditional update of the
domain row is enough).

A fan-out parent has one more step, ``on_children_done(parent, summary)``,
run by the last finishing child: its return value is the parent's result and
an exception there fails the parent (with ``on_failed`` following).
"""

from __future__ import annotations

import dataclasses
import logging
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import Count

from jobs.core.clock import database_now
from jobs.core.enums import TERMINAL_STATUSES, JobStatus
from jobs.core.exceptions import readable_reason
from jobs.dispatch.registry import JobType, job_types
from jobs.models import Job
from jobs.state import transitions

logger = logging.getLogger(__name__)

_OUTCOME_FIELDS = ("id", "type", "status", "arguments", "owner_id", "result", "error_message", "progress_data")


@dataclass(frozen=True)
class JobOutcome:
    """A job as its domain app sees it: plain values, never the row itself."""

    job_id: str
    job_type: str
    status: str
    arguments: dict[str, Any]
    owner_id: int | None = None
    result: Any = None
    error: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, row: dict[str, Any]) -> JobOutcome:
        return cls(
            job_id=str(row["id"]),
            job_type=row["type"],
            status=row["status"],
            arguments=dict(row["arguments"] or {}),
            owner_id=row["owner_id"],
            result=row["result"],
            error=row["error_message"],
            data=dict(row["progress_data"] or {}),
        )

    @classmethod
    def of_job(cls, job: Job) -> JobOutcome:
        """The outcome of a Job row already loaded (the same plain values)."""
        return cls.of({name: getattr(job, name) for name in _OUTCOME_FIELDS})


@dataclass(frozen=True)
class FailedChild:
    arguments: dict[str, Any]
    error: str
    status: str


@dataclass(frozen=True)
class ChildrenSummary:
    """How a fan-out parent's children ended."""

    children: int
    completed: int
    failed: int
    cancelled: int
    #: The children that did not complete, with their arguments and reasons.
    unsuccessful: list[FailedChild] = field(default_factory=list)

    def as_dict(self) -> dict[str, int]:
        return {
            "children": self.children,
            "completed": self.completed,
            "failed": self.failed,
            "cancelled": self.cancelled,
        }


def load_outcome(job_id: str) -> JobOutcome | None:
    row = Job.objects.filter(id=job_id).values(*_OUTCOME_FIELDS).first()
    return JobOutcome.of(row) if row else None


def _hook_for(job_type: JobType | None, status: str) -> Any:
    if job_type is None:
        return None
    return {
        JobStatus.COMPLETED: job_type.on_finished,
        JobStatus.FAILED: job_type.on_failed,
        JobStatus.CANCELLED: job_type.on_cancelled,
    }.get(JobStatus(status))


def has_outcome_hooks(type_name: str) -> bool:
    job_type = job_types().get(type_name)
    return job_type is not None and any((job_type.on_finished, job_type.on_failed, job_type.on_cancelled))


def deliver_outcome(job_id: str) -> bool:
    """Run the hook of a job that reached a final state; True when a hook ran and returned.

    Safe to call more than once and for any job: an unfinished job, or a
    type without a hook for its outcome, is left alone. A hook that raises
    is logged; the reconciler delivers it again later.
    """
    outcome = load_outcome(job_id)
    if outcome is None or outcome.status not in TERMINAL_STATUSES:
        return False
    hook = _hook_for(job_types().get(outcome.job_type), outcome.status)
    if hook is None:
        return False
    try:
        hook(outcome)
    except Exception:
        logger.exception(
            "The %s hook of job %s (%s) failed; it will be delivered again", outcome.status, job_id, outcome.job_type
        )
        return False
    return True


def deliver_after_commit(job_id: str) -> None:
    """Deliver a job's outcome once the surrounding transaction commits (at once outside one)."""
    transaction.on_commit(lambda: deliver_outcome(job_id))


def request_cancel_hook(job_id: str) -> None:
    """Tell the job's type that someone asked to cancel it; the cancel stands even if the hook fails."""
    outcome = load_outcome(job_id)
    job_type = job_types().get(outcome.job_type) if outcome else None
    if outcome is None or job_type is None or job_type.on_cancel_requested is None:
        return
    try:
        job_type.on_cancel_requested(outcome)
    except Exception:
        logger.exception("The on_cancel_requested hook of job %s (%s) failed", job_id, outcome.job_type)


def deliver_unsettled(grace_s: float, limit: int = 500) -> int:
    """Deliver again the outcomes that domain rows still wait for; returns how many were delivered.

    Each type's ``unsettled()`` names the jobs its domain rows still wait on;
    those that finished more than ``grace_s`` ago (time enough for their own
    hook to have run) get their hook again.
    """
    delivered = 0
    cutoff = database_now() - timedelta(seconds=grace_s)  # finished_at is the database's time
    for job_type in job_types().values():
        if job_type.unsettled is None:
            continue
        waiting = list(_take(job_type.unsettled(), limit))
        if not waiting:
            continue
        finished = Job.objects.filter(id__in=waiting, status__in=TERMINAL_STATUSES, finished_at__lt=cutoff).values_list(
            "id", flat=True
        )
        for job_id in finished:
            logger.warning("Delivering again the outcome of job %s (%s)", job_id, job_type.name)
            delivered += deliver_outcome(str(job_id))
    return delivered


def _take(ids: Iterable[Any], limit: int) -> Iterable[str]:
    for n, job_id in enumerate(ids):
        if n >= limit:
            return
        yield str(job_id)


# -- fan-out parents -------------------------------------------------------
def child_finished(parent_id: str) -> None:
    """Called after a child reached a final state: move the parent on, finish it if last."""
    rows = Job.objects.filter(parent__id=parent_id).values_list("status").annotate(n=Count("id")).order_by()
    counts: dict[str, int] = {status: n for status, n in rows}
    total = sum(counts.values())
    done = sum(counts.get(status, 0) for status in TERMINAL_STATUSES)
    failed = counts.get(JobStatus.FAILED, 0) + counts.get(JobStatus.CANCELLED, 0)
    parent = Job.objects.filter(id=parent_id).values("progress_data", "type").first()
    if parent is None:
        return
    state = dict(parent["progress_data"] or {})
    spec = dict(state.get(FANOUT_KEY) or {"unit": "jobs", "low": 0, "high": 100})
    spec.update(done=done, total=total, failed=failed)
    state[FANOUT_KEY] = spec
    percent = spec["low"] + (spec["high"] - spec["low"]) * (done / total if total else 1)
    if spec.get("own_progress"):
        percent = 0  # the domain reports the percentage; progress never goes back
    else:
        state.update(done=done, total=total, failed=failed, message=f"{done} of {total} {spec['unit']}")
    transitions.record_parent_progress(parent_id, int(percent), state)
    if done == total and transitions.claim_finalization(parent_id):
        _finalize(parent_id, parent["type"], counts)


#: Where a fan-out parent keeps its counters, under its progress data.
FANOUT_KEY = "fanout"


def _finalize(parent_id: str, job_type: str, counts: dict[str, int]) -> None:
    summary = ChildrenSummary(
        children=sum(counts.values()),
        completed=counts.get(JobStatus.COMPLETED, 0),
        failed=counts.get(JobStatus.FAILED, 0),
        cancelled=counts.get(JobStatus.CANCELLED, 0),
    )
    registered = job_types().get(job_type)
    hook = registered.on_children_done if registered else None
    try:
        if hook is None:
            result: Any = summary.as_dict()
        else:
            unsuccessful = [
                FailedChild(arguments=dict(arguments or {}), error=error, status=status)
                for arguments, error, status in Job.objects.filter(
                    parent__id=parent_id, status__in=(JobStatus.FAILED, JobStatus.CANCELLED)
                ).values_list("arguments", "error_message", "status")
            ]
            summary = dataclasses.replace(summary, unsuccessful=unsuccessful)
            parent = load_outcome(parent_id)
            if parent is None:  # the row was deleted under its children: nothing to finish
                raise RuntimeError(f"parent job {parent_id} no longer exists")
            result = hook(parent, summary)
    except Exception as exc:
        logger.exception("Finishing parent job %s failed", parent_id)
        transitions.finish_parent(parent_id, failed=readable_reason(exc), tb=traceback.format_exc())
        deliver_after_commit(parent_id)
        return
    transitions.finish_parent(parent_id, result=result)
    deliver_after_commit(parent_id)
