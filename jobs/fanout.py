"""Fan-out: a job that splits its work into child jobs and finishes when they all have.

Inside an actor::

    children = [ChildJob(actor="ocr_page_range", arguments={...}, job_type="pdf-ocr-pages")
                for ... in ranges]
    return fan_out(children, unit="page ranges", progress_range=(20, 90))

The parent's own run ends there, without holding a worker thread; it stays
``active`` while its children run. Each finishing child moves the parent's
progress ("3 of 10 documents"); the last one finishes the parent: with the
result of the parent type's ``on_children_done`` hook when the type
registers one (a domain app assembling a document, closing a campaign),
otherwise with a summary of the children's outcomes. Children's failures are
their own: the parent still completes, and says how many failed.

Children are created with the parent and sent only once the parent is
marked as waiting, so a fast child can never finish before its parent
listens.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from django.db.models import Count

from jobs.context import current_job

if TYPE_CHECKING:
    from jobs.models import Job

# Job models are imported inside the functions: the middleware imports this
# module while Django's apps are still loading.

logger = logging.getLogger(__name__)

FANOUT_KEY = "fanout"


@dataclass(frozen=True)
class ChildJob:
    actor: str
    arguments: dict[str, Any]
    job_type: str
    queue: str | None = None
    priority: str = "normal"


@dataclass
class AwaitChildren:
    """What a parent actor returns after ``fan_out``: the mirror then waits for the children."""

    child_ids: list[str]
    data: dict[str, Any]
    jobs: list[Job] = field(default_factory=list, repr=False)  # noqa: F821


def fan_out(
    children: Sequence[ChildJob],
    *,
    unit: str = "jobs",
    progress_range: tuple[int, int] = (0, 100),
    data: dict[str, Any] | None = None,
    own_progress: bool = False,
) -> AwaitChildren:
    """Create the current job's children (sent when the parent waits) and return the marker.

    By default each finishing child moves the parent's progress and message
    ("3 of 10 documents"). With ``own_progress`` the domain reports the
    parent's progress itself (``report_parent_progress`` from the children,
    ``set_parent_progress`` from the hook) and the platform keeps its
    counters under ``data["fanout"]`` only.
    """
    from jobs.models import Job
    from jobs.services import build_job

    running = current_job()
    if running is None:
        raise RuntimeError("fan_out is called from inside a job's actor")
    parent = Job.objects.only("id", "queue", "owner_id", "priority").get(id=running.job_id)
    rows = [
        build_job(
            job_type=child.job_type,
            queue=child.queue or parent.queue,
            actor=child.actor,
            arguments=child.arguments,
            owner=None,
            priority=child.priority,
            parent=parent,
        )
        for child in children
    ]
    for row in rows:
        row.owner_id = parent.owner_id
    Job.objects.bulk_create(rows, batch_size=500)
    low, high = progress_range
    total = len(rows)
    spec = {"unit": unit, "low": low, "high": high, "own_progress": own_progress, "done": 0, "total": total}
    state: dict[str, Any] = {**(data or {}), FANOUT_KEY: spec}
    if not own_progress:
        state.update(done=0, total=total, failed=0, message=f"0 of {total} {unit}")
    return AwaitChildren(child_ids=[str(row.id) for row in rows], data=state, jobs=rows)


def report_parent_progress(percent: float, message: str = "", **data: Any) -> None:
    """From inside a child: write the parent's progress (finer than one step per child)."""
    from jobs.models import Job

    running = current_job()
    if running is None or not running.parent_id:
        return
    parent = Job.objects.filter(id=running.parent_id).values("progress_data").first()
    if parent is None:
        return
    merged = {**parent["progress_data"], **data}
    if message:
        merged["message"] = message
    Job.record_parent_progress(running.parent_id, int(percent), merged)


def set_parent_progress(parent_id: str, percent: float, message: str = "", **data: Any) -> None:
    """From an ``on_children_done`` hook: the parent's last words before it completes."""
    from jobs.models import Job

    parent = Job.objects.filter(id=parent_id).values("progress_data").first()
    if parent is None:
        return
    merged = {**parent["progress_data"], **data}
    if message:
        merged["message"] = message
    Job.record_parent_progress(parent_id, int(percent), merged)


def child_finished(parent_id: str) -> None:
    """Called after a child reached a final state: move the parent on, finish it if last."""
    from jobs.models import TERMINAL_STATUSES, Job, JobStatus

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
    Job.record_parent_progress(parent_id, int(percent), state)
    if done == total and Job.claim_finalization(parent_id):
        _finalize(parent_id, parent["type"], counts)


def _finalize(parent_id: str, job_type: str, counts: dict[str, int]) -> None:
    from jobs.models import Job, JobStatus
    from jobs.registry import job_types

    summary = {
        "children": sum(counts.values()),
        "completed": counts.get(JobStatus.COMPLETED, 0),
        "failed": counts.get(JobStatus.FAILED, 0),
        "cancelled": counts.get(JobStatus.CANCELLED, 0),
    }
    hook = getattr(job_types().get(job_type), "on_children_done", None)
    try:
        result = hook(Job.objects.get(id=parent_id), summary) if hook else summary
    except Exception as exc:
        logger.exception("Finishing parent job %s failed", parent_id)
        Job.finish_parent(parent_id, failed=f"{type(exc).__name__}: {exc}", tb=traceback.format_exc())
        return
    Job.finish_parent(parent_id, result=result)


def start_children(marker: AwaitChildren) -> None:
    """Send the children of a parent that now waits for them."""
    from jobs.services import send_jobs

    send_jobs(marker.jobs)
