"""The job list's search, each part answered by an index at millions of jobs.

* a whole job id: that job (primary key);
* the first characters of an id (4 or more hex digits, dashes allowed): the
  jobs whose id starts so, a primary-key range of any age;
* any text: jobs whose error message contains it, failed jobs of any age (the
  partial trigram index ``job_failed_error_trgm`` holds only failed jobs' errors,
  so status changes do not write it), and jobs of every other status whose
  error or arguments contain it, only among those created in the last
  ``JOBS_SEARCH_RECENT_DAYS`` days (a range of ``job_created``; an unindexed
  ``ILIKE`` over every row took 2 s at 2,000,000 jobs).
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


def search_jobs(queryset: QuerySet[Job], search_term: str) -> QuerySet[Job]:
    """Narrow ``queryset`` to the jobs ``search_term`` finds (see the module docstring)."""
    term = search_term.strip()
    if not term:
        return queryset
    try:
        return queryset.filter(id=uuid.UUID(term))
    except ValueError:
        pass
    recent = timezone.now() - timedelta(days=settings.JOBS_SEARCH_RECENT_DAYS)
    found = Q(status=JobStatus.FAILED, error_message__icontains=term) | (
        Q(created_at__gte=recent) & (Q(error_message__icontains=term) | Q(arguments__icontains=term))
    )
    id_range = id_prefix_range(term)
    if id_range is not None:
        found |= Q(id__range=id_range)
    return queryset.filter(found)


def search_note() -> str:
    """The note under the search box: what is searched, and the time bound."""
    days = settings.JOBS_SEARCH_RECENT_DAYS
    return (
        "A job id or its first characters (any age), or text in the error message of failed jobs (any age). "
        f"Errors of other jobs, and text in arguments, are searched only in jobs created in the last {days} "
        f"day{'s' if days != 1 else ''} (JOBS_SEARCH_RECENT_DAYS): older ones are found by id."
    )
