"""The job list's search, each part answered by an index at millions of jobs.

* a whole job id: that job, any age (primary key);
* the first characters of an id (4 or more hex digits, dashes allowed): the
  jobs whose id starts so, any age (a range of the primary key);
* any text: the jobs whose error message contains it (case-insensitive),
  among failed jobs created in the last ``JOBS_SEARCH_RECENT_DAYS`` days (the
  partial index ``job_failed_error_trgm``: created_at and the error's
  trigrams, failed jobs only, so status changes do not write it) and among
  jobs retrying now (few; the ``(status, queue)`` index). A "created at" date
  filter chosen in the list replaces the default bound.

Not searched: arguments, and the errors of completed or cancelled jobs. An
``ILIKE`` over every row took 2 s at 2,000,000 jobs; over a week of all jobs
(150,000 rows) half a second.
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from jobs.models import Job, JobStatus

#: The fewest hex digits searched as the start of an id (fewer would match a large share of the table).
ID_PREFIX_MIN_DIGITS = 4
_HEX_WITH_DASHES = re.compile(r"^[0-9a-fA-F-]+$")


def id_prefix_range(term: str) -> tuple[uuid.UUID, uuid.UUID] | None:
    """The lowest and highest ids that start with ``term``'s hex digits, or None if it is not an id's start."""
    if not _HEX_WITH_DASHES.match(term):
        return None
    digits = term.replace("-", "").lower()
    if not ID_PREFIX_MIN_DIGITS <= len(digits) <= 32:
        return None
    # PostgreSQL orders uuids byte by byte, i.e. as their hex digits: a prefix is a range.
    return uuid.UUID(digits.ljust(32, "0")), uuid.UUID(digits.ljust(32, "f"))


def search_jobs(queryset: QuerySet[Job], search_term: str, *, bounded: bool = True) -> QuerySet[Job]:
    """Narrow ``queryset`` to the jobs ``search_term`` finds (see the module docstring).

    ``bounded=False``: the caller's queryset already bounds ``created_at`` (a date filter), so the
    default bound is not added.
    """
    term = search_term.strip()
    if not term:
        return queryset
    try:
        return queryset.filter(id=uuid.UUID(term))
    except ValueError:
        pass
    failed = Q(status=JobStatus.FAILED, error_message__icontains=term)
    if bounded:
        failed &= Q(created_at__gte=timezone.now() - timedelta(days=settings.JOBS_SEARCH_RECENT_DAYS))
    found = failed | Q(status=JobStatus.RETRYING, error_message__icontains=term)
    id_range = id_prefix_range(term)
    if id_range is not None:
        found |= Q(id__range=id_range)
    return queryset.filter(found)


def search_note() -> str:
    """The note under the search box: what is searched, and the time bound."""
    days = settings.JOBS_SEARCH_RECENT_DAYS
    return (
        "A job id or its first characters (any age), or text in the error message of jobs retrying now and of "
        f"failed jobs created in the last {days} day{'s' if days != 1 else ''} (JOBS_SEARCH_RECENT_DAYS); "
        "choose a “created at” date to search failed jobs of another period."
    )
