"""The monthly cleanup: prune old finished jobs in batches, then run the apps' cleanup hooks."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast
from uuid import UUID

from django.conf import settings
from django.db import connection
from django.db.models import Q
from django.db.models.deletion import Collector
from django.utils import timezone
from django_apscheduler.models import DjangoJobExecution

from jobs.core.exceptions import TransientJobError
from jobs.models import TERMINAL_STATUSES, Job, JobStatsCarry
from jobs.models.schedule import ScheduleFire
from jobs.ops.scheduling import cleanup_hooks
from jobs.ops.stats import floor_hour, recount_horizon
from jobs.worker.progress import progress

logger = logging.getLogger(__name__)


class CleanupHookFailed(TransientJobError):
    """One or more apps' cleanup hooks raised; the others ran, and the job is retried."""


@contextmanager
def _commit_without_flush_wait() -> Iterator[None]:
    """PostgreSQL: commits in the block do not wait for the WAL flush, so row locks go as soon as they can.

    A busy disk held one batch's locks 2.5 s. A crash may undo the last
    batches: the next cleanup deletes them again.
    """
    if connection.vendor != "postgresql":
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit TO OFF")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET synchronous_commit")


@dataclass
class PruneReport:
    """What one prune did: top-level jobs deleted (children and attempts went with them), in how many batches."""

    deleted: int = 0
    batches: int = 0
    #: The longest batch's transaction (s): the longest any row lock of the prune was held.
    longest_batch_s: float = 0.0
    batch_sizes: list[int] = field(default_factory=list)
    #: Each batch's transaction (s), in order.
    batch_seconds: list[float] = field(default_factory=list)


def prune_finished_jobs_in_batches(retention_days: int | None = None, batch_size: int | None = None) -> PruneReport:
    """Delete completed, failed and cancelled jobs finished before the retention window, oldest first, in batches.

    Each batch is its own short transaction (Django's delete: the batch's
    children and attempts are deleted with it, fires and domain rows pointing
    at a job keep their row with the link emptied); writers of other rows
    never wait on it, and a writer of a row it touches waits one batch at most.
    The batches walk ``job_finished_at`` from where the last one stopped
    (finished_at, id), so a batch never re-reads the index entries of the rows
    the previous batches deleted (they stay in the index until a vacuum).
    """
    days = settings.JOBS_RETENTION_DAYS if retention_days is None else retention_days
    size = batch_size or settings.JOBS_CLEANUP_BATCH
    cutoff = timezone.now() - timedelta(days=days)
    old = Job.objects.filter(status__in=TERMINAL_STATUSES, finished_at__lt=cutoff, parent__isnull=True)
    report = PruneReport()
    after: tuple[datetime | None, UUID] | None = None
    while True:
        batch = old
        if after is not None:
            # The redundant finished_at >= bound gives the index scan its start; the OR breaks ties.
            batch = old.filter(finished_at__gte=after[0]).filter(
                Q(finished_at__gt=after[0]) | Q(finished_at=after[0], id__gt=after[1])
            )
        keys = list(batch.order_by("finished_at", "id").values_list("finished_at", "id")[:size])
        if not keys:
            break
        # Finding the children, attempts and links to empty is read outside the transaction (only
        # the ids are loaded); the transaction holds the batch's writes and their row locks only.
        doomed = Job.objects.filter(id__in=[job_id for _, job_id in keys]).only("id")
        collector = Collector(using=doomed.db, origin=doomed)
        collector.collect(cast(Any, doomed))  # a queryset, as QuerySet.delete passes it (the stubs want a list)
        started = time.monotonic()
        with _commit_without_flush_wait():
            collector.delete()
        elapsed = time.monotonic() - started
        report.longest_batch_s = max(report.longest_batch_s, elapsed)
        report.batch_seconds.append(elapsed)
        report.batches += 1
        report.batch_sizes.append(len(keys))
        report.deleted += len(keys)
        after = keys[-1]
        progress(0, f"Pruned {report.deleted} finished jobs", pruned=report.deleted)
    if report.deleted:
        logger.info(
            "Pruned %s finished jobs older than %s days in %s batches (longest %.3f s)",
            report.deleted,
            days,
            report.batches,
            report.longest_batch_s,
        )
    return report


def prune_finished_jobs(retention_days: int | None = None, batch_size: int | None = None) -> int:
    """``prune_finished_jobs_in_batches``, returning the number of top-level jobs deleted."""
    return prune_finished_jobs_in_batches(retention_days, batch_size).deleted


def prune_schedule_history(retention_days: int | None = None) -> int:
    """Delete fires and django-apscheduler executions older than the retention window.

    Safe for exactly-once: a fire time that old is far past any schedule's grace.
    """
    days = settings.JOBS_RETENTION_DAYS if retention_days is None else retention_days
    cutoff = timezone.now() - timedelta(days=days)
    deleted, _ = ScheduleFire.objects.filter(fire_time__lt=cutoff).delete()
    DjangoJobExecution.objects.delete_old_job_executions(max_age=days * 86400)
    return deleted


def prune_stats_carries() -> int:
    """Delete carried finishes (``JobStatsCarry``) of hours the roll-up no longer recounts: their buckets hold them."""
    deleted, _ = JobStatsCarry.objects.filter(finished_at__lt=floor_hour(recount_horizon())).delete()
    return deleted


def run_cleanup() -> dict[str, Any]:
    """Prune jobs and schedule history, then every registered cleanup hook; a failing hook does not stop the others."""
    result: dict[str, Any] = {
        "jobs_pruned": prune_finished_jobs(),
        "fires_pruned": prune_schedule_history(),
        "carries_pruned": prune_stats_carries(),
    }
    hooks = cleanup_hooks()
    failed = []
    for index, (name, hook) in enumerate(sorted(hooks.items()), start=1):
        progress(50 + 50 * index / (len(hooks) + 1), f"Cleaning up {name}", hook=name)
        try:
            result[name] = hook()
        except Exception:
            logger.exception("Cleanup hook %s failed", name)
            failed.append(name)
    if failed:
        raise CleanupHookFailed(f"cleanup hooks failed: {', '.join(failed)}")
    progress(100, "Cleanup done")
    return result
