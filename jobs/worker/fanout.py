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

Children are inserted in the transaction that marks the parent as waiting,
and sent once it commits, so a fast child can never finish before its
parent listens, and a parent never waits for children that were not created.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from jobs.core.context import current_job
from jobs.dispatch.outcomes import FANOUT_KEY
from jobs.dispatch.registry import JobType
from jobs.dispatch.services import build_job, send_jobs
from jobs.models import Job
from jobs.state import transitions
from jobs.state.transitions import INHERIT_PRIORITY

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChildJob:
    actor: str
    arguments: dict[str, Any]
    job_type: str
    queue: str | None = None
    #: None: the parent's priority (a high-priority document's pages stay high).
    priority: str | None = None
    #: This child's own estimate (a page range: its pages), where children of one type differ in size:
    #: fair dispatch charges an owner by it, so a 50-page range counts as fifty 1-page ones.
    estimated_duration_s: float | None = None

    @classmethod
    def of(
        cls,
        job_type: JobType,
        arguments: dict[str, Any],
        *,
        priority: str | None = None,
        estimated_duration_s: float | None = None,
    ) -> ChildJob:
        """A child of a registered (internal) job type: its actor and queue come from the type."""
        return cls(
            actor=job_type.actor,
            arguments=arguments,
            job_type=job_type.name,
            queue=job_type.queue,
            priority=priority,
            estimated_duration_s=estimated_duration_s,
        )


@dataclass
class AwaitChildren:
    """What a parent actor returns after ``fan_out``: the mirror then waits for the children."""

    child_ids: list[str]
    data: dict[str, Any]
    jobs: list[Job] = field(default_factory=list, repr=False)


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

    running = current_job()
    if running is None:
        raise RuntimeError("fan_out is called from inside a job's actor")
    # Nothing is read or written here: the rows get their parent's owner, origin and (unless
    # given) priority, and are inserted, in the transaction that marks the parent as waiting
    # (``transitions.await_children``), so neither exists without the other.
    parent = Job(id=running.job_id, queue=running.queue)
    rows = [
        build_job(
            job_type=child.job_type,
            queue=child.queue or running.queue,
            actor=child.actor,
            arguments=child.arguments,
            owner=None,
            priority=child.priority or INHERIT_PRIORITY,
            parent=parent,
            estimated_duration_s=child.estimated_duration_s,
        )
        for child in children
    ]
    low, high = progress_range
    total = len(rows)
    spec = {"unit": unit, "low": low, "high": high, "own_progress": own_progress, "done": 0, "total": total}
    state: dict[str, Any] = {**(data or {}), FANOUT_KEY: spec}
    if not own_progress:
        state.update(done=0, total=total, failed=0, message=f"0 of {total} {unit}")
    return AwaitChildren(child_ids=[str(row.id) for row in rows], data=state, jobs=rows)


def report_parent_progress(percent: float, message: str = "", **data: Any) -> None:
    """From inside a child: write the parent's progress (finer than one step per child)."""

    running = current_job()
    if running is None or not running.parent_id:
        return
    parent = Job.objects.filter(id=running.parent_id).values("progress_data").first()
    if parent is None:
        return
    merged = {**parent["progress_data"], **data}
    if message:
        merged["message"] = message
    transitions.record_parent_progress(running.parent_id, int(percent), merged)


def set_parent_progress(parent_id: str, percent: float, message: str = "", **data: Any) -> None:
    """From an ``on_children_done`` hook: the parent's last words before it completes."""

    parent = Job.objects.filter(id=parent_id).values("progress_data").first()
    if parent is None:
        return
    merged = {**parent["progress_data"], **data}
    if message:
        merged["message"] = message
    transitions.record_parent_progress(parent_id, int(percent), merged)


def start_children(marker: AwaitChildren) -> None:
    """Send the children of a parent that now waits for them."""

    send_jobs(marker.jobs)
