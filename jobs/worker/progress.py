"""Progress reporting for actors: ``progress(percent, message, **data)``.

Writes are throttled (at most one per ``JOBS_PROGRESS_MIN_INTERVAL_S`` per
job, plus the first and the last), conditional on the run still holding its
job (its fencing token, ``jobs.state.fencing``), and double as the cancel
check: a job asked to stop raises ``JobCancelled`` here, a run whose job was
taken over by another worker ``RunSuperseded``.
Outside a worker (a shell, a unit test) the call does nothing.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from django.conf import settings

from jobs.core.context import RunningJob, current_job
from jobs.core.enums import StopReason
from jobs.state import events, transitions
from jobs.state.fencing import Fence
from jobs.worker.stopping import raise_stop

logger = logging.getLogger(__name__)


def progress(percent: float, message: str = "", *, force: bool = False, **data: Any) -> None:
    """Report how far the current job is; raises JobCancelled if it was cancelled.

    A report is written when the last write is older than the throttle
    interval (or with ``force``); otherwise it is kept, and the next write or
    the job's completion carries it. So a short job costs no progress write.
    """
    job = current_job()
    if job is None:
        return
    if job.stop_reason:
        raise_stop(job, job.stop_reason)
    payload = dict(data)
    if message:
        payload["message"] = message
    now = time.monotonic()
    due = now - job.last_progress_write >= settings.JOBS_PROGRESS_MIN_INTERVAL_S
    if not (force or due):
        job.pending_percent, job.pending_progress = int(percent), payload
        return
    job.pending_progress = None
    stop = write_progress(job, int(percent), payload)
    if stop:
        raise_stop(job, stop)


def write_progress(job: RunningJob, percent: int, payload: dict[str, Any]) -> str:
    """Write one report (from the job's thread or the watchdog's); the reason the run must stop, or "".

    The write carries the run's fencing token: refused, the run was either
    asked to cancel (it still holds the job) or taken over (it does not).
    """

    job.last_progress_write = time.monotonic()
    if not transitions.record_progress(job.job_id, percent, payload, attempt=job.attempt, worker_id=job.worker_id):
        # The caller stops the run (raise_stop in its thread, the watchdog's stop from its own):
        # setting the reason here would make the watchdog think the stop was already delivered.
        return why_refused(Fence.of(job))
    events.publish_progress(job.job_id, percent, payload)
    return ""


def why_refused(fence: Fence) -> str:
    """Why a run's fenced write was refused: cancelled while it holds its job, or superseded."""
    if fence.attempt and not transitions.holds_run(fence.job_id, fence.attempt, fence.worker_id):
        return StopReason.SUPERSEDED
    return StopReason.CANCELLED_WHILE_RUNNING


def flush_pending(job: RunningJob) -> str:
    """Write a report the job kept back, once the throttle allows; the reason to stop, or ""."""
    payload = job.pending_progress
    if payload is None or time.monotonic() - job.last_progress_write < settings.JOBS_PROGRESS_MIN_INTERVAL_S:
        return ""
    job.pending_progress = None
    return write_progress(job, job.pending_percent, payload)


def write_progress_of(job_id: str, percent: int, data: dict[str, Any], *, fence: Fence | None = None) -> bool:
    """Write a report for a running job from a thread of its own (a relay of a child's counters).

    Unthrottled: the caller paces itself. False when the job must stop
    (cancelled, or no longer this run's: pass the run's ``current_fence()``,
    taken in the job's own thread, so that a stale run's reports are refused).
    """
    attempt, worker = (fence.attempt, fence.worker_id) if fence is not None else (0, "")
    if not transitions.record_progress(job_id, percent, data, attempt=attempt, worker_id=worker):
        return False
    events.publish_progress(job_id, percent, data)
    return True
