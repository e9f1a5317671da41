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

from jobs.context import current_job
from jobs.exceptions import JobCancelled

logger = logging.getLogger(__name__)


def progress(percent: float, message: str = "", *, force: bool = False, **data: Any) -> None:
    """Report how far the current job is; raises JobCancelled if it was cancelled."""
    job = current_job()
    if job is None:
        return
    now = time.monotonic()
    if job.stop_reason:
        raise JobCancelled(job.stop_reason)
    due = now - job.last_progress_write >= settings.JOBS_PROGRESS_MIN_INTERVAL_S
    if not (force or due or percent >= 100):
        return
    from jobs.models import Job

    payload = dict(data)
    if message:
        payload["message"] = message
    job.last_progress_write = now
    if not Job.record_progress(job.job_id, int(percent), payload):
        job.stop_reason = "cancelled while running"
        raise JobCancelled(job.stop_reason)
    from jobs import events

    events.publish_progress(job.job_id, int(percent), payload)
