"""Progress reporting for actors: ``progress(percent, message, **data)``.

Writes are throttled (at most one per ``JOBS_PROGRESS_MIN_INTERVAL_S`` per
job, plus the first and the last), conditional on the job still running, and
double as the cancel check: a job asked to stop raises ``JobCancelled`` here.
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
    if not write_progress(job, int(percent), payload):
        raise_stop(job, StopReason.CANCELLED_WHILE_RUNNING)


def write_progress(job: RunningJob, percent: int, payload: dict[str, Any]) -> bool:
    """Write one report (from the job's thread or the watchdog's); False if the job must stop."""

    job.last_progress_write = time.monotonic()
    if not transitions.record_progress(job.job_id, percent, payload):
        # The caller stops the run (raise_stop in its thread, the watchdog's stop from its own):
        # setting the reason here would make the watchdog think the stop was already delivered.
        return False
    events.publish_progress(job.job_id, percent, payload)
    return True


def flush_pending(job: RunningJob) -> bool:
    """Write a report the job kept back, once the throttle allows; False if the job must stop."""
    payload = job.pending_progress
    if payload is None or time.monotonic() - job.last_progress_write < settings.JOBS_PROGRESS_MIN_INTERVAL_S:
        return True
    job.pending_progress = None
    return write_progress(job, job.pending_percent, payload)


def write_progress_of(job_id: str, percent: int, data: dict[str, Any]) -> bool:
    """Write a report for a running job from a thread of its own (a relay of a child's counters).

    Unthrottled: the caller paces itself. False when the job must stop
    (cancelled, or no longer running).
    """
    if not transitions.record_progress(job_id, percent, data):
        return False
    events.publish_progress(job_id, percent, data)
    return True
