"""Seed rows for export tests and read exported files back."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection
from openpyxl import load_workbook

from jobs.models import Job, JobStatus

BASE = datetime(2026, 11, 2, 9, 0, 0, tzinfo=UTC)
#: The job-metrics dataset's columns, in order (the weekly analytics CSV).
JOB_METRICS_HEADER = [
    "queue",
    "origin",
    "jobs",
    "completed",
    "failed",
    "cancelled",
    "retried",
    "success_rate",
    "avg_duration_s",
]


def seed_jobs(owner: Any, count: int, *, job_type: str = "report", start: int = 0, **fields: Any) -> list[Job]:
    """Finished jobs with whole-second times (Excel keeps seconds exactly)."""
    rows = []
    for n in range(start, start + count):
        created = BASE + timedelta(minutes=n)
        rows.append(
            Job(
                type=job_type,
                queue="maintenance" if n % 2 else "thumbnails",
                actor="report",
                owner=owner,
                status=JobStatus.COMPLETED if n % 3 else JobStatus.FAILED,
                attempts=1 + n % 2,
                created_at=created,
                started_at=created + timedelta(seconds=1),
                finished_at=created + timedelta(seconds=1 + n % 7),
                updated_at=created,
                error_message="" if n % 3 else f"row {n} failed: it's broken",
                **fields,
            )
        )
    return Job.objects.bulk_create(rows)


def seed_many_jobs(owner: Any, count: int, job_type: str = "bulk") -> None:
    """``count`` finished jobs in one INSERT ... SELECT generate_series (fast on PostgreSQL)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"""
            INSERT INTO {Job._meta.db_table} (
                id, type, queue, actor, arguments, owner_id, priority, status, progress, progress_data,
                error_message, traceback, attempts, max_attempts, worker_id, created_at, started_at,
                finished_at, updated_at
            )
            SELECT gen_random_uuid(), %s, 'maintenance', 'bulk', '{{}}'::jsonb, %s, 'normal', 'completed',
                   100, '{{}}'::jsonb, '', '', 1, 1, '', %s + n * interval '1 second',
                   %s + n * interval '1 second', %s + n * interval '1 second' + interval '2 seconds',
                   %s + n * interval '1 second'
            FROM generate_series(1, %s) AS n
            """,
            [job_type, owner.pk, BASE, BASE, BASE, BASE, count],
        )


def export_path(export: Any) -> Path:
    return Path(settings.MEDIA_ROOT) / export.file.name


def read_csv(content: bytes) -> tuple[list[str], list[list[str]]]:
    rows = list(csv.reader(io.StringIO(content.decode("utf-8"), newline="")))
    return rows[0], rows[1:]


def read_xlsx(path: Path) -> tuple[list[Any], list[list[Any]]]:
    workbook = load_workbook(path, read_only=True)
    sheet = workbook.worksheets[0]
    rows = [list(row) for row in sheet.iter_rows(values_only=True)]
    workbook.close()
    return rows[0], rows[1:]


def expected_rows(jobs: list[Job]) -> list[dict[str, Any]]:
    """The jobs dataset's default fields for these rows, as typed values, in the natural order."""
    ordered = sorted(jobs, key=lambda job: (job.created_at, str(job.id)))
    return [
        {
            "id": str(job.id),
            "type": job.type,
            "queue": job.queue,
            "status": job.status,
            "priority": job.priority,
            "attempts": job.attempts,
            "owner": job.owner.username if job.owner else None,
            "created_at": job.created_at,
            "started_at": job.started_at,
            "finished_at": job.finished_at,
            "duration_s": Decimal((job.finished_at - job.started_at).total_seconds()).quantize(Decimal("0.001"))
            if job.finished_at and job.started_at
            else None,
            "error": job.error_message,
        }
        for job in ordered
    ]


def typed_csv_row(header: list[str], row: list[str]) -> dict[str, Any]:
    """A CSV row parsed back to the types of the jobs dataset (empty means NULL)."""
    values: dict[str, Any] = {}
    for name, text in zip(header, row, strict=True):
        if name in ("created_at", "started_at", "finished_at"):
            values[name] = datetime.fromisoformat(text) if text else None
        elif name == "attempts":
            values[name] = int(text)
        elif name == "duration_s":
            values[name] = Decimal(text) if text else None
        elif name == "owner":
            values[name] = text or None
        else:
            values[name] = text
    return values


def typed_xlsx_row(header: list[str], row: list[Any]) -> dict[str, Any]:
    """An Excel row back to the dataset's types (naive UTC date-times become aware again)."""
    values: dict[str, Any] = {}
    for name, value in zip(header, row, strict=True):
        if isinstance(value, datetime):
            value = value.replace(tzinfo=UTC)
        elif name == "duration_s" and value is not None:
            value = Decimal(str(value)).quantize(Decimal("0.001"))
        elif name == "error" and value is None:
            value = ""
        values[name] = value
    return values
