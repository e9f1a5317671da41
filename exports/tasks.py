"""The exports app's actors: thin, each calls one service (names and queues come from the job types)."""

from __future__ import annotations

from typing import Any

from exports import services
from exports.job_types import CSV_EXPORT, EXPIRE_EXPORTS, WEEKLY_JOB_METRICS
from jobs.public import job_actor


@job_actor(CSV_EXPORT)
def csv_export(export_id: str) -> dict[str, Any]:
    """Write one export (CSV or Excel) under the memory ceiling."""
    return services.run_export(export_id)


@job_actor(WEEKLY_JOB_METRICS)
def export_weekly_job_metrics() -> dict[str, Any]:
    """Weekly analytics for staff: the past week's per-queue job metrics as CSV."""
    export = services.export_weekly_job_metrics()
    return {
        "export_id": str(export.id),
        "rows": export.row_count,
        "download_url": services.download_url(export.id),
        "staff_notified": export.staff_notified_at is not None,
    }


@job_actor(EXPIRE_EXPORTS)
def expire_exports() -> dict[str, Any]:
    """Daily: delete the files of exports past their expiry; their downloads already answer 410."""
    return services.expire_exports()
