"""The queue table: the one source of truth for actors, worker pools and the console.

Every value can be overridden without a code change, through a Django
setting or an environment variable named ``QUEUE_<QUEUE>_<FIELD>``, for
example ``QUEUE_PDF_PROCESSING_TIME_LIMIT=900`` or
``QUEUE_THUMBNAILS_THREADS=8``. A time limit of ``none`` means no limit.

``MAX_PER_OWNER`` caps how many jobs of one owner run at once on the queue
while another owner under its own cap has jobs waiting there (0: no cap).
The cap is work-conserving: a slot nobody under a cap can take goes to the
next owner in turn, so an owner alone still uses every slot
(``jobs.worker.fairqueue``).

``PREFETCH`` is how many messages each worker process holds (running or
waiting for a thread); by default one per thread, so waiting messages stay
in Redis where priorities order them. A queue of many millisecond jobs can
hold more (``QUEUE_MAINTENANCE_PREFETCH=16`` with 8 threads): its threads
then never wait for Redis, and the held jobs' claims commit while they wait
(no-op throughput roughly 1.5x). The cost: a high-priority job can wait
behind at most ``prefetch - threads`` held jobs per process.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class QueuePolicy:
    name: str
    max_retries: int
    time_limit_s: int | None
    concurrency: int
    processes: int
    threads: int
    constraint: str
    #: 0: one per thread.
    prefetch: int = 0
    #: Most jobs of one owner running at once while another owner under its cap waits (0: no cap).
    #: Work-conserving: an owner alone on the queue uses every slot.
    max_per_owner: int = 0

    @property
    def max_attempts(self) -> int:
        return self.max_retries + 1

    @property
    def held_messages(self) -> int:
        """Messages each worker process holds: at least one per thread."""
        return max(self.threads, self.prefetch)

    @property
    def env_prefix(self) -> str:
        return "QUEUE_" + self.name.upper().replace("-", "_") + "_"


_TABLE: tuple[QueuePolicy, ...] = (
    # No cap: fair dispatch shares time by estimated seconds, so a customer
    # who arrives takes every slot that frees until it has had its share; a
    # cap would keep it to one slot of two while the other waits (bench/fairness.py).
    QueuePolicy("pdf-processing", 2, 600, 2, 1, 2, "CPU-bound: the heavy work runs in child processes"),
    # A process per SMTP connection: composing and rendering one message never
    # waits for the GIL held by another connection's thread (bench/email.py).
    # A batch runs for minutes under the rate limit: no one customer's campaign
    # holds every SMTP connection while another's waits.
    QueuePolicy("email-sender", 3, None, 5, 5, 1, "100 emails/min across all workers", max_per_owner=3),
    QueuePolicy("csv-export", 1, 300, 1, 1, 1, "256 MB per export"),
    QueuePolicy("thumbnails", 2, 60, 4, 1, 4, "parallel, per document"),
    QueuePolicy("maintenance", 1, 3600, 1, 1, 1, "scheduled housekeeping"),
)

_FIELDS = {
    "RETRIES": "max_retries",
    "TIME_LIMIT": "time_limit_s",
    "CONCURRENCY": "concurrency",
    "PROCESSES": "processes",
    "THREADS": "threads",
    "PREFETCH": "prefetch",
    "MAX_PER_OWNER": "max_per_owner",
}


def _override(name: str) -> str | None:
    try:
        from django.conf import settings

        if settings.configured and hasattr(settings, name):
            return str(getattr(settings, name))
    except ImportError:  # pragma: no cover - Django is always installed
        pass
    return os.environ.get(name)


def _apply_overrides(policy: QueuePolicy) -> QueuePolicy:
    changes: dict[str, int | None] = {}
    for suffix, field in _FIELDS.items():
        raw = _override(policy.env_prefix + suffix)
        if raw is None:
            continue
        if field == "time_limit_s" and raw.strip().lower() in ("", "none", "0"):
            changes[field] = None
            continue
        try:
            changes[field] = int(raw)
        except ValueError as exc:
            raise ValueError(f"{policy.env_prefix + suffix} must be an integer, got {raw!r}") from exc
    if "concurrency" in changes and "threads" not in changes and "processes" not in changes:
        # Concurrency is what operators think in: processes follow it in a
        # pool of single-threaded processes, threads in the others.
        if policy.threads == 1 and policy.processes > 1:
            changes["processes"] = changes["concurrency"]
        else:
            changes["threads"] = changes["concurrency"]
    return replace(policy, **changes) if changes else policy  # type: ignore[arg-type]


@functools.cache
def all_queues() -> tuple[QueuePolicy, ...]:
    """The queue table with overrides applied, read once per process (``reload_queue_table`` re-reads)."""
    return tuple(_apply_overrides(policy) for policy in _TABLE)


def reload_queue_table() -> None:
    """Forget the cached table (tests that change the overrides call this)."""
    all_queues.cache_clear()


def queue_names() -> list[str]:
    return [policy.name for policy in _TABLE]


class UnknownQueue(LookupError):
    """A queue name that is not in the queue table."""


def get_queue(name: str) -> QueuePolicy:
    for policy in all_queues():
        if policy.name == name:
            return policy
    raise UnknownQueue(name)
