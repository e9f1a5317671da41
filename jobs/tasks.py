"""The platform's own actors: one canary per queue.

A canary proves a queue end to end: it is picked up, reports progress and
finishes (or fails on request). The scheduler sends one to every queue each
minute; health checks read their pickup latency; tests use them as the job
whose behaviour they control.
"""

from __future__ import annotations

import time
from typing import Any

import dramatiq

from jobs.core.exceptions import PermanentJobError, TransientJobError
from jobs.core.queues import queue_names
from jobs.dispatch.canaries import canary_actor_name
from jobs.worker.progress import progress


class CanaryFailed(TransientJobError):
    """A canary asked to fail; retried like any unexpected error."""


class CanaryFailedPermanently(PermanentJobError):
    """A canary asked to fail for good; not retried."""


def run_canary(queue: str, seconds: float = 0.0, steps: int = 1, fail: bool | str = False) -> dict[str, Any]:
    steps = max(1, int(steps))
    for step in range(1, steps + 1):
        if seconds:
            time.sleep(seconds / steps)
        progress(step * 100 / steps, f"Step {step} of {steps}", step=step, steps=steps)
    if fail == "permanent":
        raise CanaryFailedPermanently("canary failed on request (permanent)")
    if fail:
        raise CanaryFailed("canary failed on request")
    return {"queue": queue, "steps": steps}


for _queue in queue_names():
    globals()[canary_actor_name(_queue)] = dramatiq.actor(actor_name=canary_actor_name(_queue), queue_name=_queue)(
        run_canary
    )

# The scheduler's cleanup actor (workers discover actors through this module).
from jobs.ops.scheduling import tasks as _scheduling_tasks  # noqa: E402,F401
