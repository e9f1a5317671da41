"""Whether an earlier run of a job may still be going: its worker still heartbeats.

A take-over happens when a worker's heartbeat has expired; that worker may
only be frozen or cut off from Redis, and come back. Its writes are refused
(``jobs.state.fencing``), but work already under way outside the database
(an email handed to the SMTP server) cannot be refused: a domain that must
not repeat such work asks here before redoing what the earlier run held.
"""

from __future__ import annotations

import dramatiq

from jobs.models import Job, JobAttempt


def run_may_still_be_going(token: str) -> bool:
    """Whether the worker that held the run ``token`` (``str(Fence)``: "<job id>:<attempt>") heartbeats."""
    job_id, _, attempt_text = token.rpartition(":")
    if not job_id or not attempt_text.isdigit():
        return False
    attempt = int(attempt_text)
    worker_id = (
        Job.objects.filter(id=job_id, attempts=attempt).values_list("worker_id", flat=True).first()
        or JobAttempt.objects.filter(job_id=job_id, number=attempt, outcome=JobAttempt.Outcome.WORKER_LOST)
        .values_list("worker_id", flat=True)
        .first()
    )
    if not worker_id:
        return False
    is_alive = getattr(dramatiq.get_broker(), "is_worker_alive", None)
    return bool(is_alive is not None and is_alive(worker_id))
