"""When a failed attempt is tried again, and after how long."""

from __future__ import annotations

import random

from django.conf import settings

from jobs.core.exceptions import JobCancelled, JobTimedOut, PermanentJobError


def is_permanent(exc: BaseException, throws: tuple[type[BaseException], ...] = ()) -> bool:
    """Errors that retrying cannot fix: bad input, time-outs, cancels, declared ones."""
    return isinstance(exc, (PermanentJobError, JobTimedOut, JobCancelled, *throws))


def backoff_ms(attempts_done: int) -> int:
    """Exponential backoff with jitter: min × 2^(n-1), capped, ±20 %."""
    base = settings.JOBS_RETRY_BACKOFF_MIN_MS * (2 ** max(0, attempts_done - 1))
    capped = min(base, settings.JOBS_RETRY_BACKOFF_MAX_MS)
    # Backoff jitter; nothing here needs unpredictability.
    return int(capped * random.uniform(0.8, 1.2))  # noqa: S311
