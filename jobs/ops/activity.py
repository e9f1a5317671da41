"""Per-user activity over a period, gathered from every app that has some (the daily digest reads it).

An app registers a source from its ``ready()``: a function of (user ids,
since) returning, per user id, counts by label. The platform registers its
own: jobs by status.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import datetime

from django.db.models import Count

from jobs.models import Job

#: user ids, since -> {user id: {label: count}}
ActivitySource = Callable[[Iterable[int], datetime], dict[int, dict[str, int]]]

_sources: dict[str, ActivitySource] = {}


def register_activity_source(name: str, source: ActivitySource) -> None:
    _sources[name] = source


def activity_sources() -> dict[str, ActivitySource]:
    return dict(_sources)


def recently_active_users(since: datetime) -> set[int]:
    """Users who started a job since ``since``."""
    return set(Job.objects.filter(created_at__gte=since, owner__isnull=False).values_list("owner_id", flat=True))


def jobs_by_status(user_ids: Iterable[int], since: datetime) -> dict[int, dict[str, int]]:
    """The jobs each user started since ``since`` (top-level jobs only), counted by status."""
    counts: dict[int, dict[str, int]] = defaultdict(dict)
    rows = (
        Job.objects.filter(owner_id__in=list(user_ids), parent__isnull=True, created_at__gte=since)
        .values_list("owner_id", "status")
        .annotate(n=Count("id"))
        .order_by()
    )
    for owner_id, status, n in rows:
        counts[owner_id][status] = n
    return dict(counts)


register_activity_source("jobs", jobs_by_status)
