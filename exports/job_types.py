"""The exports app's job types: ``csv-export`` (any user) and ``weekly-job-metrics`` (staff).

Each type declares its queue once; ``exports.tasks`` declares the actors
from them. Both settle their export through the hooks of ``exports.outcomes``.
"""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from exports.models import Export, ExportFormat
from exports.outcomes import export_job_cancelled, export_job_failed, unsettled_export_jobs
from exports.services import create_export, validate_export_request
from jobs.public import JobOrigin, JobPlan, JobType, register_job_type


class CsvExportSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """``{"query_params": {"dataset", "filters", "fields", "ordering"}, "format": "csv"|"xlsx"}``."""

    query_params = serializers.JSONField()
    format = serializers.ChoiceField(choices=ExportFormat.choices, default=ExportFormat.CSV)


def plan_csv_export(user: Any, data: dict[str, Any]) -> JobPlan:
    """Validate the query against the dataset's whitelist and record the Export with its job."""
    dataset, query = validate_export_request(user, data["query_params"])
    export = create_export(user, dataset, query, data["format"])

    def link(job: Any) -> None:
        Export.objects.filter(id=export.id).update(job_id=job.pk)

    return JobPlan(
        arguments={"export_id": str(export.id)},
        on_created=link,
        # The caller learns the export's id from the job's data before any worker runs.
        initial_data={"export_id": str(export.id), "message": "Waiting for a worker"},
    )


class NoArgumentsSerializer(serializers.Serializer):  # type: ignore[type-arg]
    pass


CSV_EXPORT = register_job_type(
    JobType(
        name="csv-export",
        queue="csv-export",
        actor="csv_export",
        serializer=CsvExportSerializer,
        description="Export a dataset (documents, deliveries, jobs) as a CSV or Excel file.",
        default_duration_s=20.0,
        # Deferrable: a file the client downloads when it is ready; asking again later loses nothing.
        deferrable=True,
        plan=plan_csv_export,
        on_failed=export_job_failed,
        on_cancelled=export_job_cancelled,
        # Names the jobs of every unsettled export, the weekly ones too: the
        # reconciler delivers each job's outcome to the hooks of its own type.
        unsettled=unsettled_export_jobs,
    )
)

WEEKLY_JOB_METRICS = register_job_type(
    JobType(
        name="weekly-job-metrics",
        queue="maintenance",
        actor="export_weekly_job_metrics",
        serializer=NoArgumentsSerializer,
        description="Export the past week's per-queue job metrics as a CSV file for staff.",
        default_duration_s=5.0,
        staff_only=True,
        plan=lambda user, data: JobPlan(arguments={}),
        origin=JobOrigin.MAINTENANCE,  # the operators' weekly analytics, not a customer's export
        on_failed=export_job_failed,
        on_cancelled=export_job_cancelled,
    )
)
