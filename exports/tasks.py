"""The exports app's actors: thin, each calls one service."""

from __future__ import annotations

from typing import Any

import dramatiq

from exports import services


def csv_export(export_id: str) -> dict[str, Any]:
    """Write one export (CSV or Excel) under the memory ceiling."""
    return services.run_export(export_id)


def export_weekly_job_metrics() -> dict[str, Any]:
    """Weekly analytics for staff: the past week's per-queue job metrics as CSV."""
    export = services.export_weekly_job_metrics()
    return {
        "export_id": str(export.id),
        "rows": export.row_count,
        "download_url": services.download_url(export.id),
    }


dramatiq.actor(actor_name="csv_export", queue_name="csv-export")(csv_export)
dramatiq.actor(actor_name="export_weekly_job_metrics", queue_name="maintenance")(export_weekly_job_metrics)
