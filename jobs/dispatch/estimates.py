"""How long a job should take: the median of recent runs of its type."""

from __future__ import annotations

import math
import statistics
import time

from jobs.dispatch.registry import default_duration_for
from jobs.models import Job, JobStatus

_SAMPLE = 50
_CACHE_S = 60.0
_cache: dict[str, tuple[float, float | None]] = {}


def recent_median_duration_s(type_name: str) -> float | None:
    """Median run time of the last completed jobs of this type (cached a minute per process)."""
    now = time.monotonic()
    cached = _cache.get(type_name)
    if cached and now - cached[0] < _CACHE_S:
        return cached[1]
    rows = (
        Job.objects.filter(type=type_name, status=JobStatus.COMPLETED, started_at__isnull=False)
        .order_by("-finished_at")
        .values_list("started_at", "finished_at")[:_SAMPLE]
    )
    durations = [(finished - started).total_seconds() for started, finished in rows if finished and started]
    median = statistics.median(durations) if durations else None
    _cache[type_name] = (now, median)
    return median


def estimate_duration_s(type_name: str) -> float:
    median = recent_median_duration_s(type_name)
    return median if median is not None else default_duration_for(type_name)


def humanize_duration(seconds: float) -> str:
    """A range a person reads at a glance: "4-6 minutes", "10-20 seconds"."""
    seconds = max(1.0, seconds)
    if seconds < 60:
        low, high = max(1, math.floor(seconds * 0.7)), max(2, math.ceil(seconds * 1.3))
        return f"{low}-{high} seconds"
    if seconds < 3600:
        low, high = max(1, math.floor(seconds * 0.8 / 60)), math.ceil(seconds * 1.2 / 60)
        return f"{low}-{max(high, low + 1)} minutes"
    low_h, high_h = max(1, math.floor(seconds * 0.8 / 3600)), math.ceil(seconds * 1.2 / 3600)
    return f"{low_h}-{max(high_h, low_h + 1)} hours"
