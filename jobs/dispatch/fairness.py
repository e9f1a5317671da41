"""Whose bucket a job waits in, and with what weight (read by the broker's fair dispatch).

Each waiting message names its owner's bucket, the owner's weight and the
job's cost, its estimated seconds (``jobs.core.messages.OWNER``/``WEIGHT``/
``COST``); the broker shares each queue's time between the buckets in
proportion to their weights (``jobs.worker.fairqueue``).

* A customer's job, and every child of it (OCR page ranges, a document's
  thumbnails, email batches), waits in ``u<user id>``.
* The platform's own work waits in one shared system bucket: canaries and
  maintenance by their origin (``Job.origin``), even when staff started
  them; and anything without an owner (schedules' jobs, their children).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from django.db.models import Max

from jobs.core.exceptions import UnknownJobType
from jobs.core.origin import SYSTEM_ORIGINS
from jobs.dispatch.estimates import estimate_duration_s
from jobs.dispatch.registry import get_job_type
from jobs.models import Job, ShareWeight

SYSTEM_BUCKET = "sys"
#: Bounds on a job's cost: a wild estimate must not stall its owner for hours, nor make it free.
MIN_COST_S = 0.01
MAX_COST_S = 3600.0
#: What one run of a fan-out parent charges (it plans or collects its children, a fraction of a second).
FAN_OUT_RUN_COST_S = 0.5
#: How long a weight read from the database is used before it is read again.
WEIGHT_CACHE_S = 30.0

_weights: dict[int, tuple[float, int]] = {}
_weights_lock = threading.Lock()


def owner_bucket(job: Job) -> str:
    """The fair-dispatch bucket a job waits in."""
    # The origin, not the type: maintenance that a person started (and owns) is still system work.
    if job.owner_id is None or job.origin in SYSTEM_ORIGINS:
        return SYSTEM_BUCKET
    return f"u{job.owner_id}"


def job_cost(job: Job) -> float:
    """What a job charges its owner's turn: its estimated seconds (owners share time, not job counts).

    A fan-out parent's estimate covers its children's work, which they charge
    themselves as they are sent; the parent's own runs (plan the children, then
    collect them) cost about ``FAN_OUT_RUN_COST_S``. Charging it the whole
    estimate would bill its owner twice and put, say, a customer's one-page OCR
    behind another's whole 300-page backlog of page ranges.
    """
    if _fans_out(job.type):
        return FAN_OUT_RUN_COST_S
    estimate = job.estimated_duration_s or estimate_duration_s(job.type)
    return round(min(MAX_COST_S, max(MIN_COST_S, float(estimate))), 3)


def _fans_out(type_name: str) -> bool:
    try:
        return get_job_type(type_name).on_children_done is not None
    except UnknownJobType:
        return False


def weight_of(user_id: int | None) -> int:
    """A user's fair-share weight: the user's own, else the highest of the user's groups, else 1."""
    if user_id is None:
        return 1
    now = time.monotonic()
    with _weights_lock:
        cached = _weights.get(user_id)
    if cached is not None and cached[0] > now:
        return cached[1]
    weight = _read_weight(user_id)
    with _weights_lock:
        _weights[user_id] = (now + WEIGHT_CACHE_S, weight)
    return weight


def _read_weight(user_id: int) -> int:
    own = ShareWeight.objects.filter(user_id=user_id).values_list("weight", flat=True).first()
    if own is not None:
        return int(own)
    from_groups: Any = ShareWeight.objects.filter(group__user__id=user_id).aggregate(top=Max("weight"))["top"]
    return int(from_groups) if from_groups else 1


def forget_weights() -> None:
    """Drop cached weights (the admin calls this on a change; tests too)."""
    with _weights_lock:
        _weights.clear()
