"""Letting other owners in: a long run that can stop between steps gives the rest of its work back.

Dispatch never preempts a running job, so under fair dispatch another owner's
job still waits for a slot until a running job ends. A child that works in
steps (an OCR page range reads a batch of pages at a time) calls
:func:`yield_if_others_wait` between steps: when another owner's job waits on
its queue, the run raises ``Reschedule(0)``; the job goes back to its owner's
bucket at once with its attempt unchanged, the freed slot goes to whoever fair
dispatch serves next, and the next run carries on from the first unfinished
step. Alone on its queue a job never yields, so it costs nothing there.
"""

from __future__ import annotations

import logging

import dramatiq
import redis

from jobs.core.context import current_job
from jobs.core.enums import JobPriority
from jobs.core.exceptions import Reschedule

logger = logging.getLogger(__name__)


def others_waiting() -> bool:
    """Whether another owner's job waits on the current job's queue at this job's priority or above.

    False outside a worker, with a broker without fair dispatch, or when Redis does not answer
    (carrying on is always safe; yielding is only kinder).
    """
    job = current_job()
    if job is None or not job.owner:
        return False
    check = getattr(dramatiq.get_broker(), "others_waiting", None)
    if check is None:
        return False
    try:
        return bool(check(job.queue, job.owner, high=job.priority == JobPriority.HIGH))
    except redis.RedisError:
        logger.debug("Could not ask Redis whether others wait on %s", job.queue, exc_info=True)
        return False


def yield_if_others_wait(done: str) -> None:
    """Between two steps of a run: hand the rest back when another owner waits (raises ``Reschedule``).

    ``done`` says how far the run got, for the job's progress message.
    """
    if others_waiting():
        raise Reschedule(0, f"{done}; the rest waits its turn behind another customer's job")
