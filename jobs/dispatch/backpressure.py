"""Backpressure: refuse a customer's request to start more work while too much of it is waiting.

Two limits, checked once, where a request starts a job (``services.start_job``
with an API origin, after an idempotent replay or a plan's ``existing_job``
has already been answered, so neither is ever refused):

* **Per owner** (429): the owner's jobs of the requested type that are
  waiting (queued, retrying, scheduled) may number at most
  ``JOBS_MAX_WAITING_PER_OWNER`` (default 1000), or
  ``JOBS_MAX_WAITING_PER_OWNER_<TYPE>`` for one type (``PDF_OCR`` for
  ``pdf-ocr``). One customer cannot bury a queue under its own backlog.
* **Per queue** (503): a *deferrable* type (``JobType.deferrable``) is
  refused while the queue's backlog in Redis (``queue_depth``) has reached
  ``QUEUE_<QUEUE>_MAX_BACKLOG`` (default 10000). Work that cannot wait is
  accepted whatever the backlog.

Never refused: staff; work nobody asked for through the API (schedules,
``manage.py``, canaries, anything without a signed-in user); children of a
fan-out and jobs a domain service creates while handling an accepted request
(an upload's thumbnails): those go through ``build_job``/``create_jobs``,
which check nothing. Both limits are soft: two requests racing at the limit
may both get in. ``0`` turns a limit off. A refusal says when to come back
(``Retry-After``: ``JOBS_BACKPRESSURE_RETRY_AFTER_S``) and names the setting
that refused it; ``jobs.web.api.errors`` turns it into the response.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

import dramatiq
from django.conf import settings

from jobs.core.access import sees_everything
from jobs.core.enums import WAITING_STATUSES
from jobs.core.origin import Origin, Via
from jobs.models import Job

if TYPE_CHECKING:
    from jobs.dispatch.registry import JobType

logger = logging.getLogger(__name__)

OWNER_LIMIT = "JOBS_MAX_WAITING_PER_OWNER"
#: Used when neither a setting nor the environment names a queue's ceiling.
DEFAULT_MAX_BACKLOG = 10_000


class Backpressure(Exception):  # noqa: N818 - a refusal, answered with a status code
    """A request refused because too much of its kind of work is already waiting."""

    status_code = 503

    def __init__(self, detail: str, *, limit: str, job_type: str, retry_after_s: int, **facts: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.limit = limit
        self.job_type = job_type
        self.retry_after_s = retry_after_s
        self.facts = facts

    def body(self) -> dict[str, Any]:
        """The response body: the sentence, the setting that refused it, and the numbers."""
        return {"detail": self.detail, "limit": self.limit, "job_type": self.job_type, **self.facts}


class TooManyWaiting(Backpressure):
    """The owner already has the most waiting jobs of this type that one owner may have (429)."""

    status_code = 429


class QueueBacklogFull(Backpressure):
    """The queue's backlog has reached its ceiling and this type can wait (503)."""

    status_code = 503


def admit(job_type: JobType, user: Any, origin: Origin, queue: str | None = None) -> None:
    """Raise ``TooManyWaiting`` or ``QueueBacklogFull`` when a customer's request must wait; else return.

    ``queue`` is where the job will wait (a plan may choose it), by default the type's.
    """
    if not is_checked(user, origin):
        return
    queue = queue or job_type.queue
    retry_after_s = max(1, int(settings.JOBS_BACKPRESSURE_RETRY_AFTER_S))
    limit_name, max_waiting = owner_limit(job_type.name)
    if max_waiting > 0:
        # Counting stops past the limit: a customer far over it costs no more than one at it.
        waiting = (
            Job.objects.filter(owner=user, type=job_type.name, status__in=WAITING_STATUSES)
            .values("id")[:max_waiting]
            .count()
        )
        if waiting >= max_waiting:
            raise TooManyWaiting(
                f"you already have {waiting} {job_type.name} jobs waiting, the most allowed; "
                "start more once some have started",
                limit=limit_name,
                job_type=job_type.name,
                retry_after_s=retry_after_s,
                max_waiting=max_waiting,
                waiting=waiting,
            )
    if not job_type.deferrable:
        return
    limit_name, max_backlog = backlog_ceiling(queue)
    if max_backlog <= 0:
        return
    try:
        backlog = int(dramatiq.get_broker().queue_depth(queue))  # type: ignore[attr-defined]
    except Exception:
        # The ceiling guards the workers; Redis being unreachable must not refuse work the
        # reconciler will send once it is back.
        logger.warning("Could not read the backlog of queue %s; accepting the request", queue, exc_info=True)
        return
    if backlog >= max_backlog:
        raise QueueBacklogFull(
            f"the {queue} queue has {backlog} jobs waiting, its ceiling; {job_type.name} jobs "
            "are accepted again once it drains",
            limit=limit_name,
            job_type=job_type.name,
            retry_after_s=retry_after_s,
            queue=queue,
            max_backlog=max_backlog,
            backlog=backlog,
        )


def is_checked(user: Any, origin: Origin) -> bool:
    """Only a signed-in customer's own request through the API meets the limits."""
    return origin.via == Via.API and bool(getattr(user, "is_authenticated", False)) and not sees_everything(user)


def owner_limit(type_name: str) -> tuple[str, int]:
    """The setting that limits one owner's waiting jobs of a type, and its value (0: no limit)."""
    per_type = f"{OWNER_LIMIT}_{_setting_suffix(type_name)}"
    raw = _read(per_type)
    if raw is not None:
        return per_type, _as_int(per_type, raw)
    return OWNER_LIMIT, int(settings.JOBS_MAX_WAITING_PER_OWNER)


def backlog_ceiling(queue: str) -> tuple[str, int]:
    """The setting that caps a queue's backlog for deferrable work, and its value (0: no ceiling)."""
    name = f"QUEUE_{_setting_suffix(queue)}_MAX_BACKLOG"
    raw = _read(name)
    return name, DEFAULT_MAX_BACKLOG if raw is None else _as_int(name, raw)


def _setting_suffix(name: str) -> str:
    return name.upper().replace("-", "_")


def _read(name: str) -> str | None:
    """A Django setting of that name, else the environment variable (as the queue table's overrides)."""
    if hasattr(settings, name):
        return str(getattr(settings, name))
    return os.environ.get(name)


def _as_int(name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None
