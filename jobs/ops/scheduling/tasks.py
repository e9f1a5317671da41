"""The scheduler's platform actor (imported by ``jobs.tasks``, so workers discover it)."""

from __future__ import annotations

from typing import Any

import dramatiq

from jobs.ops.scheduling.cleanup import run_cleanup as run_cleanup_service
from jobs.ops.scheduling.job_types import CLEANUP_ACTOR


def run_cleanup() -> dict[str, Any]:
    return run_cleanup_service()


run_cleanup_actor = dramatiq.actor(actor_name=CLEANUP_ACTOR, queue_name="maintenance")(run_cleanup)
