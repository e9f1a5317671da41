"""How an export hears its job's final outcome: the export job types' hooks (``jobs.public``).

The run itself marks an export running, completed, or failed for reasons
only it knows (too large for its memory ceiling or for a sheet); a failed
attempt leaves it pending with that attempt's error. Whether another
attempt follows is the platform's call (a time limit or a permanent error
ends the job at once), and these hooks settle the export with the job's
final outcome. Each is a conditional update, so running one twice (the
reconciler re-delivers) or after the run settled the export changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from exports.models import RUNNABLE_STATUSES, Export
from jobs.public import JobOutcome


def _unsettled_export_ids(job_id: str) -> list[str]:
    return [
        str(pk)
        for pk in Export.objects.filter(job_id=job_id, status__in=RUNNABLE_STATUSES).values_list("id", flat=True)
    ]


def export_job_failed(outcome: JobOutcome) -> None:
    """The job failed for good (its last attempt, a time limit, a permanent error): so did its export."""
    for export_id in _unsettled_export_ids(outcome.job_id):
        Export.mark_failed(export_id, outcome.error or "the export job failed")


def export_job_cancelled(outcome: JobOutcome) -> None:
    """The job was cancelled (before or while it ran): its export fails, saying so."""
    for export_id in _unsettled_export_ids(outcome.job_id):
        Export.mark_failed(export_id, f"cancelled: {outcome.error}" if outcome.error else "cancelled")


def unsettled_export_jobs() -> Iterable[Any]:
    """The jobs of exports not final yet (pending or running), whatever their export job type."""
    return Export.objects.filter(status__in=RUNNABLE_STATUSES, job__isnull=False).values_list("job_id", flat=True)
