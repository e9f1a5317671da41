"""The monthly cleanup: prune old finished jobs in batches, then run the apps' cleanup hooks."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone
from django_apscheduler.models import DjangoJobExecution

from jobs.core.exceptions import TransientJobError
from jobs.models import TERMINAL_STATUSES, Job
from jobs.models.schedule import ScheduleFire
from jobs.ops.scheduling import cleanup_hooks
from jobs.worker.progress import progress

logger = logging.getLogger(__name__)


class CleanupHookFailed(TransientJobError):
    """One or more apps' cleanup hooks raised; the others ran, and the job is retried."""


def prune_finished_jobs(retention_days: int | None = None, batch_size: int | None = None) -> int:
    """Delete completed, failed and cancelled jobs finished before the retention window, a batch at a time.

    Each batch is its own short DELETE (attempts cascade; fires and domain
    rows pointing at a job keep their row with the link emptied).
    """
    days = settings.JOBS_RETENTION_DAYS if retention_days is None else retention_days
    size = batch_size or settings.JOBS_CLEANUP_BATCH
    cutoff = timezone.now() - timedelta(days=days)
    old = Job.objects.filter(status__in=TERMINAL_STATUSES, finished_at__lt=cutoff, parent__isnull=True)
    deleted = 0
    while True:
        ids = list(old.order_by().values_list("id", flat=True)[:size])
        if not ids:
            break
        Job.objects.filter(id__in=ids).delete()
        deleted += len(ids)
        progress(0, f"Pruned {deleted} finished jobs", pruned=deleted)
    if deleted:
        logger.info("Pruned %s finished jobs older than %s days", deleted, days)
    return deleted


def prune_schedule_history(retention_days: int | None = None) -> int:
    """Delete fires and django-apscheduler executions older than the retention window.

    Safe for exactly-once: a fire time that old is far past any schedule's grace.
    """
    days = settings.JOBS_RETENTION_DAYS if retention_days is None else retention_days
    cutoff = timezone.now() - timedelta(days=days)
    deleted, _ = ScheduleFire.objects.filter(fire_time__lt=cutoff).delete()
    DjangoJobExecution.objects.delete_old_job_executions(max_age=days * 86400)
    return deleted


def run_cleanup() -> dict[str, Any]:
    """Prune jobs and schedule history, then every registered cleanup hook; a failing hook does not stop the others."""
    result: dict[str, Any] = {"jobs_pruned": prune_finished_jobs(), "fires_pruned": prune_schedule_history()}
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
