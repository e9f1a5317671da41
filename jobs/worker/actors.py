"""One way to declare an actor: from its job type, which names its queue and actor once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dramatiq

from jobs.dispatch.registry import JobType


def job_actor(job_type: JobType, **options: Any) -> Callable[[Callable[..., Any]], dramatiq.Actor[Any, Any]]:
    """Declare the Dramatiq actor that runs ``job_type``: ``@job_actor(OCR_DOCUMENT) def ocr_document(...)``.

    The actor's name and queue come from the job type, so a queue is written
    in one place; ``options`` are Dramatiq actor options (``throws=...``).
    """

    def declare(fn: Callable[..., Any]) -> dramatiq.Actor[Any, Any]:
        return dramatiq.actor(actor_name=job_type.actor, queue_name=job_type.queue, **options)(fn)

    return declare
