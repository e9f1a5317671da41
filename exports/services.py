"""Exports: validate a request, write the file from the database, keep it for a while.

``run_export`` is what the ``csv-export`` job calls. The file is written in
a child process under a resident-memory ceiling, so an export that would
grow too large is stopped without taking its worker down. On PostgreSQL the
child runs ``exports.writers`` with psycopg only (no ``django.setup()``: it
starts in ~0.1 s and stays small); elsewhere it sets Django up. Rows always
stream: PostgreSQL CSV through ``COPY (SELECT ...) TO STDOUT``, everything
else in chunks of ``EXPORT_CHUNK_ROWS`` (a server-side cursor on PostgreSQL).
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from exports.child import write_partial_in_child
from exports.datasets import JOB_METRICS, Dataset, ExportQuery, get_dataset
from exports.exceptions import ExportNotRunnable, ExportTooLarge, InvalidExportQuery
from exports.models import Export, ExportFormat, ExportStatus
from exports.writers import (
    EXCEL_MAX_ROWS,
    ExportSpec,
    Report,
    fetch_chunks,
    write_csv,
    write_postgresql,
    write_postgresql_export,
    write_xlsx,
)
from jobs.core.context import current_job
from jobs.core.exceptions import JobCancelled, PermanentJobError
from jobs.worker.isolation import MemoryCeilingExceeded, last_peak_rss_mb, run_in_child
from jobs.worker.progress import progress
from jobs.state import transitions

logger = logging.getLogger(__name__)

# The platform's children are forkserver processes; shared counters come from the same kind.
_CHILD_CONTEXT = multiprocessing.get_context("forkserver")

#: Keys a request's ``query_params`` may hold.
QUERY_KEYS = ("dataset", "filters", "fields", "ordering")


class ExportStopped(Exception):  # noqa: N818 - a signal from the child, not a failure
    """The job was cancelled while the child wrote the file."""


# -- validating a request ---------------------------------------------------------------
def validate_export_request(user: Any, query_params: Any) -> tuple[Dataset, ExportQuery]:
    """The dataset and validated query of a request; ValidationError naming the offender."""
    if not isinstance(query_params, dict):
        raise ValidationError({"query_params": ["must be an object"]})
    unknown = sorted(set(query_params) - set(QUERY_KEYS))
    if unknown:
        raise ValidationError({"query_params": [f"unknown key {unknown[0]!r}; allowed: {', '.join(QUERY_KEYS)}"]})
    try:
        dataset = get_dataset(query_params.get("dataset"))
        if dataset.staff_only and not getattr(user, "is_staff", False):
            raise InvalidExportQuery("dataset", f"dataset {dataset.name!r} is for staff only")
        query = dataset.validate(query_params.get("filters"), query_params.get("fields"), query_params.get("ordering"))
    except InvalidExportQuery as exc:
        raise ValidationError({"query_params": {exc.field: [exc.message]}}) from None
    return dataset, query


def create_export(user: Any, dataset: Dataset, query: ExportQuery, export_format: str) -> Export:
    """The Export row of a request; staff export every user's rows."""
    is_staff = bool(getattr(user, "is_staff", False))
    return Export.objects.create(
        owner=user if getattr(user, "is_authenticated", False) else None,
        dataset=dataset.name,
        query_params=query.as_json(),
        all_owners=is_staff or dataset.owner_sql is None,
        format=export_format,
    )


def download_url(export_id: Any) -> str:
    return reverse("export-download", args=[export_id])


# -- running the export job ---------------------------------------------------------------
def run_export(export_id: str) -> dict[str, Any]:
    """Write an export in a child process under the memory ceiling; the job's service.

    The child only writes ``<file>.part``; this process renames it once the
    child succeeded and deletes it otherwise (a killed child leaves one).
    A thread relays the child's row counts to the job's progress.
    """
    running = current_job()
    job_id = running.job_id if running else None
    export = Export.objects.filter(id=export_id).first()
    if export is None or not Export.mark_running(export_id):
        raise ExportNotRunnable(f"export {export_id} is {export.status if export else 'gone'}")
    ceiling = settings.EXPORT_MEMORY_CEILING_MB
    relative = f"exports/{uuid.uuid4().hex}.{export.format}"
    partial = _partial_path(relative)
    partial.parent.mkdir(parents=True, exist_ok=True)
    cells = _CHILD_CONTEXT.Array("q", [-1, 0], lock=False)
    relay = _ProgressRelay(_Progress(job_id, export_id), cells)
    try:
        with relay:
            if connection.vendor == "postgresql":
                spec = export_spec(export, partial)
                written = run_in_child(write_postgresql_export, spec, cells, rss_limit_mb=ceiling)
            else:
                written = run_in_child(write_partial_in_child, export_id, str(partial), cells, rss_limit_mb=ceiling)
        if written.get("too_many_rows"):
            raise ExportTooLarge(
                f"an Excel sheet holds at most {EXCEL_MAX_ROWS - 1:,} rows and this export has "
                f"{written['total_rows']:,}: export it as CSV or narrow its filters"
            )
        partial.replace(_media_path(relative))
    except ExportTooLarge as exc:
        Export.mark_failed(export_id, str(exc))
        raise
    except MemoryCeilingExceeded:
        message = f"export stopped: it needed more than {ceiling} MB"
        Export.mark_failed(export_id, message, peak_memory_mb=round(last_peak_rss_mb(), 1))
        raise ExportTooLarge(message) from None
    except JobCancelled as exc:
        Export.mark_failed(export_id, f"cancelled: {exc}")
        raise
    except Exception as exc:
        _attempt_failed(export_id, job_id, exc)
        raise
    finally:
        partial.unlink(missing_ok=True)
    peak = round(last_peak_rss_mb(), 1)
    size = _media_path(relative).stat().st_size
    Export.mark_completed(
        export_id,
        file=relative,
        row_count=written["rows"],
        total_rows=written["total_rows"],
        size_bytes=size,
        peak_memory_mb=peak,
    )
    url = download_url(export_id)
    progress(
        100,
        f"Export ready: {written['rows']:,} records",
        force=True,
        export_id=export_id,
        rows_written=written["rows"],
        total_rows=written["total_rows"],
        download_url=url,
    )
    return {
        "export_id": export_id,
        "download_url": url,
        "rows": written["rows"],
        "size_bytes": size,
        "peak_memory_mb": peak,
    }


def _attempt_failed(export_id: str, job_id: str | None, exc: Exception) -> None:
    """Fail the export, or put it back to pending when its job will try again."""
    from jobs.models import Job

    error = f"{type(exc).__name__}: {exc}"
    attempts_left = False
    if job_id is not None and not isinstance(exc, PermanentJobError):
        row = Job.objects.filter(id=job_id).values("attempts", "max_attempts").first()
        attempts_left = bool(row and row["attempts"] < row["max_attempts"])
    if attempts_left:
        Export.mark_pending(export_id, error)
    else:
        Export.mark_failed(export_id, error)


def _media_path(relative: str) -> Path:
    return Path(settings.MEDIA_ROOT) / relative


def _partial_path(relative: str) -> Path:
    return _media_path(relative + ".part")


# -- progress ---------------------------------------------------------------------------
class _Progress:
    """Writes "Generating report... n of N records" to the job at most every interval."""

    def __init__(self, job_id: str | None, export_id: str) -> None:
        self.job_id = job_id
        self.export_id = export_id
        self.last = 0.0
        self.written: tuple[int, int] | None = None

    def update(self, total: int, rows: int, *, force: bool = False) -> None:
        if self.job_id is None or (total, rows) == self.written:
            return
        now = time.monotonic()
        if not force and rows and now - self.last < settings.JOBS_PROGRESS_MIN_INTERVAL_S:
            return
        self.last = now
        self.written = (total, rows)
        from jobs.state import events
        from jobs.models import Job

        percent = min(99, rows * 100 // total) if total else 0
        data = {
            "message": f"Generating report... {rows:,} of {total:,} records",
            "export_id": self.export_id,
            "rows_written": rows,
            "total_rows": total,
        }
        if not transitions.record_progress(self.job_id, percent, data):
            raise ExportStopped("cancelled while running")
        events.publish_progress(self.job_id, percent, data)


class _ProgressRelay:
    """A thread that copies the child's (total, rows) counters into the job's progress.

    When the job was cancelled it just stops: the watchdog kills the child.
    """

    def __init__(self, reporter: _Progress, cells: Any) -> None:
        self.reporter = reporter
        self.cells = cells
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="export-progress", daemon=True)

    def __enter__(self) -> _ProgressRelay:
        if self.reporter.job_id is not None:
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join()

    def _run(self) -> None:
        interval = max(0.05, settings.JOBS_PROGRESS_MIN_INTERVAL_S)
        try:
            while not self.stopping.wait(interval):
                total, rows = self.cells[0], self.cells[1]
                if total >= 0:
                    self.reporter.update(total, rows, force=True)
        except ExportStopped:
            pass
        except Exception:
            logger.warning("Could not relay the progress of export %s", self.reporter.export_id, exc_info=True)
        finally:
            connection.close()


# -- writing the file (in the child process, or directly from a shell or a test) ------------
def export_spec(export: Export, partial: Path) -> ExportSpec:
    """What the PostgreSQL child needs to write this export: SQL, bound values, connection."""
    dataset = get_dataset(export.dataset)
    query = ExportQuery.from_json(export.query_params)
    owner_id = None if export.all_owners else export.owner_id
    quote = connection.ops.quote_name
    sql, params = dataset.select_sql(query, owner_id=owner_id, vendor="postgresql", quote=quote)
    count_sql, _ = dataset.select_sql(query, owner_id=owner_id, vendor="postgresql", quote=quote, ordered=False)
    database = {
        key: value
        for key, value in connection.get_connection_params().items()
        if key not in ("context", "cursor_factory", "prepare_threshold")
    }
    return ExportSpec(
        sql=sql,
        count_sql=count_sql,
        params=params,
        fields=list(query.fields),
        kinds=[dataset.fields[name].kind for name in query.fields],
        export_format=export.format,
        sheet_title=dataset.name,
        partial_path=str(partial),
        chunk_rows=settings.EXPORT_CHUNK_ROWS,
        database=database,
    )


def write_export(export_id: str, relative_path: str, *, job_id: str | None = None) -> dict[str, Any]:
    """Write an export's file at ``MEDIA_ROOT/relative_path`` in this process (a shell, a test)."""
    partial = _partial_path(relative_path)
    partial.parent.mkdir(parents=True, exist_ok=True)
    reporter = _Progress(job_id, export_id)
    try:
        written = write_partial(export_id, partial, reporter.update)
        if written.get("too_many_rows"):
            raise ExportTooLarge(f"an Excel sheet holds at most {EXCEL_MAX_ROWS - 1:,} rows")
        reporter.update(written["total_rows"], written["rows"], force=True)
        partial.replace(_media_path(relative_path))
    finally:
        partial.unlink(missing_ok=True)
    return {**written, "size_bytes": _media_path(relative_path).stat().st_size}


def write_partial(export_id: str, partial: Path, report: Report) -> dict[str, int]:
    """Write the export's rows to ``partial`` from whatever database this is."""
    export = Export.objects.get(id=export_id)
    if connection.vendor == "postgresql":
        return write_postgresql(export_spec(export, partial), report)
    dataset = get_dataset(export.dataset)
    query = ExportQuery.from_json(export.query_params)
    owner_id = None if export.all_owners else export.owner_id
    sql, params = dataset.select_sql(
        query, owner_id=owner_id, vendor=connection.vendor, quote=connection.ops.quote_name
    )
    count_sql, _ = dataset.select_sql(
        query, owner_id=owner_id, vendor=connection.vendor, quote=connection.ops.quote_name, ordered=False
    )
    params = [_adapt(value) for value in params]
    spec = ExportSpec(
        sql=sql,
        count_sql=count_sql,
        params=params,
        fields=list(query.fields),
        kinds=[dataset.fields[name].kind for name in query.fields],
        export_format=export.format,
        sheet_title=dataset.name,
        partial_path=str(partial),
        chunk_rows=settings.EXPORT_CHUNK_ROWS,
        database={},
    )
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT COUNT(*) FROM ({count_sql}) AS export_rows", params)
        row = cursor.fetchone()
        total = int(row[0]) if row else 0
        report(total, 0)
        if export.format == ExportFormat.XLSX and total >= EXCEL_MAX_ROWS:
            return {"rows": 0, "total_rows": total, "too_many_rows": 1}
        cursor.execute(sql, params)
        chunks = fetch_chunks(cursor, settings.EXPORT_CHUNK_ROWS)
        if export.format == ExportFormat.CSV:
            rows = write_csv(chunks, spec, total, report)
        else:
            rows = write_xlsx(chunks, spec, total, report)
    return {"rows": rows, "total_rows": total}


def _adapt(value: Any) -> Any:
    if isinstance(value, datetime):
        return connection.ops.adapt_datetimefield_value(value)
    return value


# -- housekeeping and analytics -----------------------------------------------------------
def delete_expired_exports(now: datetime | None = None) -> int:
    """Delete the files of exports past their expiry; the rows stay, marked expired."""
    now = now or timezone.now()
    deleted = 0
    for export in Export.objects.filter(status=ExportStatus.COMPLETED, expires_at__lte=now).iterator():
        if export.file:
            export.file.delete(save=False)
        if Export.expire(str(export.id)):
            deleted += 1
    if deleted:
        logger.info("Deleted %s expired export file(s)", deleted)
    return deleted


def past_week(now: datetime) -> tuple[datetime, datetime]:
    """The seven whole UTC days before ``now``'s day."""
    end = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return end - timedelta(days=7), end


def export_weekly_job_metrics(now: datetime | None = None) -> Export:
    """Export the past week's per-queue job metrics as a CSV file for staff."""
    start, end = past_week(now or timezone.now())
    query = JOB_METRICS.validate({"finished_after": start.isoformat(), "finished_before": end.isoformat()}, None, None)
    running = current_job()
    export = Export.objects.create(
        owner=None,
        job_id=running.job_id if running else None,
        dataset=JOB_METRICS.name,
        query_params=query.as_json(),
        all_owners=True,
        format=ExportFormat.CSV,
    )
    run_export(str(export.id))
    export.refresh_from_db()
    return export
