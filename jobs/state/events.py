"""Where job events go once written: the single hook live progress listens on.

Every place that writes a job's progress or status calls one function here
*after* its write is durable, so subscribers (``jobs.web.realtime`` publishes to
WebSocket clients) see exactly what the database says, once:

* ``publish_progress``: ``jobs.worker.progress`` after a progress write (and domain
  code that reports progress the same way);
* ``publish_committed``: the worker's state writer (``jobs.state.writer``) after a
  batch of claims and completions commits;
* ``publish_status``: the ``Job`` transition methods (failed, retrying,
  cancelled, rescheduled, retried ...), ``publish_created``: job creation
  (``jobs.dispatch.services.create_jobs``); these go out when the surrounding
  transaction commits, or at once outside one.

Listeners must be cheap and must not block: they run in the caller's thread,
which may be a worker's hot path. With no listener installed every call is a
no-op (``JOBS_LIVE_EVENTS=false``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from django.db import transaction

from jobs.core.enums import JobStatus
from jobs.state.batch import Applied, Claim, Completion

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobEvent:
    """A change of one job, as a client sees it."""

    kind: str  # "created", "status" or "progress"
    job_id: str
    status: str
    progress: int | None = None
    data: dict[str, Any] | None = None
    error: str = ""
    #: The job's owner, when the caller knows it (``owner_known``): saves the publisher a lookup.
    owner_id: int | None = None
    owner_known: bool = False

    def as_message(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "job_id": self.job_id,
            "status": self.status,
            "progress": self.progress,
            "data": self.data,
            "error": self.error,
        }


EventListener = Callable[[JobEvent], None]
ProgressListener = Callable[[str, int, dict[str, Any]], None]
_listeners: list[ProgressListener] = []
_event_listeners: list[EventListener] = []


class CommittedWrite(Protocol):
    """One item of a state writer batch: the write and whether it changed its job."""

    write: Any
    result: Any


def add_progress_listener(listener: ProgressListener) -> None:
    _listeners.append(listener)


def add_event_listener(listener: EventListener) -> None:
    if listener not in _event_listeners:
        _event_listeners.append(listener)


def _emit(event: JobEvent) -> None:
    for listener in _event_listeners:
        try:
            listener(event)
        except Exception:
            logger.warning("Job event listener %r failed", listener, exc_info=True)


def _emit_all(events: list[JobEvent]) -> None:
    for event in events:
        _emit(event)


def _after_commit(announce: Callable[[], None]) -> None:
    """Run ``announce`` when the surrounding transaction commits (at once outside one); never raise."""
    try:
        transaction.on_commit(announce)
    except Exception:
        logger.warning("Could not schedule a job event", exc_info=True)


def publish_progress(job_id: str, percent: int, data: dict[str, Any]) -> None:
    """A progress write of a running job has committed."""
    for listener in _listeners:
        try:
            listener(job_id, percent, data)
        except Exception:
            logger.warning("Progress listener %r failed", listener, exc_info=True)
    if _event_listeners:
        _emit(JobEvent("progress", str(job_id), JobStatus.ACTIVE, int(percent), data))


def publish_status(
    job_id: Any,
    status: str,
    *,
    progress: int | None = None,
    data: dict[str, Any] | None = None,
    error: str = "",
    owner_id: int | None = None,
    owner_known: bool = False,
) -> None:
    """A job's status changed: tell listeners once the surrounding transaction commits."""
    if not _event_listeners:
        return
    event = JobEvent("status", str(job_id), str(status), progress, data, error, owner_id, owner_known)
    _after_commit(lambda: _emit(event))


def publish_created(jobs: Iterable[Any]) -> None:
    """New job rows (``jobs.models.Job``): announced once their transaction commits.

    A "created" event may reach a client after the job's first worker events
    (they come from another process), so clients only use it for a job they
    know nothing about yet.
    """
    if not _event_listeners:
        return
    created = [
        JobEvent("created", str(job.id), str(job.status), job.progress, None, "", job.owner_id, True) for job in jobs
    ]
    _after_commit(lambda: _emit_all(created))


def publish_committed(batch: Iterable[CommittedWrite]) -> None:
    """A state writer batch committed: one status event per claim or completion that took effect."""
    if not _event_listeners:
        return
    # Imported here: jobs.state.writer calls this module, and hot_writes imports nothing of ours.

    for item in batch:
        applied = item.result
        if not isinstance(applied, Applied):
            continue
        write = item.write
        owner, known = applied.owner_id, applied.owner_known
        if isinstance(write, Claim):
            _emit(JobEvent("status", write.job_id, JobStatus.ACTIVE, owner_id=owner, owner_known=known))
        elif isinstance(write, Completion):
            _emit(JobEvent("status", write.job_id, JobStatus.COMPLETED, 100, write.progress_data, "", owner, known))


def publish_progress_on_commit(job_id: Any, percent: int, data: dict[str, Any]) -> None:
    """Progress written inside a transaction (a fan-out parent's): told once it commits."""
    if _event_listeners:
        _after_commit(lambda: publish_progress(str(job_id), percent, data))
