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
from datetime import UTC, datetime, timedelta
from pathlib import PurePosixPath
from typing import Any

from django.conf import settings
from django.core.files.storage import Storage
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from exports.child import write_partial_in_child
from exports.exceptions import ExpiredExportsNotDeleted, ExportNotRunnable, ExportTooLarge
from exports.models import JOB_METRICS_DATASET, RUNNABLE_STATUSES, Export, ExportFormat, ExportStatus
from exports.notifications import email_staff_about
from exports.progress import ExportProgress, ProgressRelay
from exports.queries import export_spec, write_partial
from exports.writers import EXCEL_MAX_ROWS, write_postgresql_export
from jobs.public import (
    Dataset,
    DatasetQuery,
    Fence,
    InvalidDatasetQuery,
    JobCancelled,
    JobNotRerunnable,
    MemoryCeilingExceeded,
    RunSuperseded,
    current_fence,
    current_job,
    fenced,
    get_dataset,
    last_peak_rss_mb,
    progress,
    readable_reason,
    run_in_child,
    save_local_file,
    scratch_dir,
    sees_everything,
)

logger = logging.getLogger(__name__)

# The platform's children are forkserver processes; shared counters come from the same kind.
_CHILD_CONTEXT = multiprocessing.get_context("forkserver")

#: Keys a request's ``query_params`` may hold.
QUERY_KEYS = ("dataset", "filters", "fields", "ordering")


# -- validating a request ---------------------------------------------------------------
def validate_export_request(user: Any, query_params: Any) -> tuple[Dataset, DatasetQuery]:
    """The dataset and validated query of a request; ValidationError naming the offender."""
    if not isinstance(query_params, dict):
        raise ValidationError({"query_params": ["must be an object"]})
    unknown = sorted(set(query_params) - set(QUERY_KEYS))
    if unknown:
        raise ValidationError({"query_params": [f"unknown key {unknown[0]!r}; allowed: {', '.join(QUERY_KEYS)}"]})
    try:
        dataset = get_dataset(query_params.get("dataset"))
        if dataset.staff_only and not sees_everything(user):
            raise InvalidDatasetQuery("dataset", f"dataset {dataset.name!r} is for staff only")
        query = dataset.validate(query_params.get("filters"), query_params.get("fields"), query_params.get("ordering"))
    except InvalidDatasetQuery as exc:
        raise ValidationError({"query_params": {exc.field: [exc.message]}}) from None
    return dataset, query


def create_export(user: Any, dataset: Dataset, query: DatasetQuery, export_format: str) -> Export:
    """The Export row of a request; staff export every user's rows."""
    return Export.objects.create(
        owner=user if getattr(user, "is_authenticated", False) else None,
        dataset=dataset.name,
        query_params=query.as_json(),
        all_owners=sees_everything(user) or dataset.owner_sql is None,
        format=export_format,
    )


def copy_export(export_id: Any) -> Export:
    """A new pending Export asking what ``export_id`` asked (its owner, dataset, query, format): "Run again".

    The original keeps its file until it expires; the copy gets its own. The query was validated
    when the original was requested and is stored validated, so it is copied as it is.
    """
    original = Export.objects.filter(id=export_id).first()
    if original is None:
        raise JobNotRerunnable(f"export {export_id} no longer exists")
    return Export.objects.create(
        owner=original.owner,
        dataset=original.dataset,
        query_params=original.query_params,
        all_owners=original.all_owners,
        format=original.format,
    )


def download_url(export_id: Any) -> str:
    return reverse("export-download", args=[export_id])


# -- running the export job ---------------------------------------------------------------
def run_export(export_id: str) -> dict[str, Any]:
    """Write an export in a child process under the memory ceiling; the job's service.

    The child only writes ``<file>.part`` in the job's scratch directory on
    this host; once the child succeeded, this process stores it (streamed to
    the configured storage), and only after that upload succeeded does the
    Export name the file. The scratch directory goes either way (a killed
    child leaves a ``.part`` there, never in the storage). A thread relays
    the child's row counts to the job's progress.
    """
    running = current_job()
    job_id = running.job_id if running else None
    fence = current_fence()
    export = Export.objects.filter(id=export_id).first()
    with fenced():
        started = export is not None and Export.mark_running(export_id)
    if export is None or not started:
        raise ExportNotRunnable(f"export {export_id} is {export.status if export else 'gone'}")
    ceiling = settings.EXPORT_MEMORY_CEILING_MB
    relative = export_file_name(export, fence)
    storage = _storage()
    cells = _CHILD_CONTEXT.Array("q", [-1, 0], lock=False)
    relay = ProgressRelay(ExportProgress(job_id, export_id, fence=fence), cells)
    try:
        with scratch_dir("export") as scratch:
            partial = scratch / f"{PurePosixPath(relative).name}.part"
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
            size = partial.stat().st_size
            stored = save_local_file(storage, relative, partial)
    except ExportTooLarge as exc:
        with fenced():
            Export.mark_failed(export_id, str(exc))
        raise
    except MemoryCeilingExceeded:
        message = f"export stopped: it needed more than {ceiling} MB"
        with fenced():
            Export.mark_failed(export_id, message, peak_memory_mb=round(last_peak_rss_mb(), 1))
        raise ExportTooLarge(message) from None
    except (JobCancelled, RunSuperseded):
        # Cancelled: the job ends so, and its type's on_cancelled hook fails the export.
        # Superseded: the export is the run that took the job over's to settle.
        raise
    except Exception as exc:
        _attempt_failed(export_id, job_id, exc)
        raise
    peak = round(last_peak_rss_mb(), 1)
    try:
        # The row names the file that won: only the run that still holds the job records its own.
        with fenced():
            completed = Export.mark_completed(
                export_id,
                file=stored,
                row_count=written["rows"],
                total_rows=written["total_rows"],
                size_bytes=size,
                peak_memory_mb=peak,
            )
    except RunSuperseded:
        logger.warning("Export %s: this run lost its job to another worker; its file %s is deleted", export_id, stored)
        storage.delete(stored)
        raise
    if not completed:
        # Settled meanwhile (cancelled): no row will ever name this file.
        logger.warning("Export %s was settled while it ran; its file %s is deleted", export_id, stored)
        storage.delete(stored)
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
    """An attempt failed: the export waits (pending) for the job's next attempt or its final outcome.

    Whether another attempt comes is the platform's to decide (a time limit
    or a permanent error ends the job at once): if none does, the job type's
    ``on_failed`` hook fails the export with the job's reason. Run without a
    job (a shell), nothing else settles it, so it fails here.
    """
    error = readable_reason(exc)  # the owner reads it: a driver's text stays in the job's traceback
    with fenced():  # a run that lost its job leaves the export to the run that took it over
        if job_id is None:
            Export.mark_failed(export_id, error)
        else:
            Export.mark_pending(export_id, error)


def export_file_name(export: Export, fence: Fence | None) -> str:
    """The storage name of an export's file, per attempt in a run: ``exports/<id>.a<attempt>.<format>``.

    A run whose job was taken over by another worker (it was frozen, or cut
    off from Redis) may still be writing when it wakes: with a name of its
    own it can never overwrite the file of the run that took over, and the
    Export row names the file that won (``mark_completed``, fenced). Outside
    a run (a shell) ``exports/<id>.<format>``. The expiry
    (``delete_expired_exports``) deletes whatever file the row names.
    """
    suffix = f".a{fence.attempt}" if fence is not None else ""
    return f"exports/{export.id}{suffix}.{export.format}"


def _storage() -> Storage:
    """Where export files are kept: the storage of ``Export.file`` (the configured default)."""
    return Export._meta.get_field("file").storage  # type: ignore[attr-defined,no-any-return]


# -- writing the file in this process (a shell, a test) ------------------------------------
def write_export(export_id: str, relative_path: str, *, job_id: str | None = None) -> dict[str, Any]:
    """Write an export's file in this process (a shell, a test) and store it as ``relative_path``.

    Returns the counts, ``size_bytes`` and the ``name`` the storage kept it under.
    """
    reporter = ExportProgress(job_id, export_id)
    with scratch_dir("export") as scratch:
        partial = scratch / f"{PurePosixPath(relative_path).name}.part"
        written = write_partial(export_id, partial, reporter.update)
        if written.get("too_many_rows"):
            raise ExportTooLarge(f"an Excel sheet holds at most {EXCEL_MAX_ROWS - 1:,} rows")
        reporter.update(written["total_rows"], written["rows"], force=True)
        size = partial.stat().st_size
        name = save_local_file(_storage(), relative_path, partial)
    return {**written, "size_bytes": size, "name": name}


# -- housekeeping and analytics -----------------------------------------------------------
def delete_expired_exports(now: datetime | None = None) -> int:
    """Delete the files of exports past their expiry; the rows stay, marked expired.

    The file goes first, through the storage the export was written to (the
    file system or S3), and only then does the row stop naming it: a run
    stopped in between leaves the row completed and past its time (its
    download already answers 410), and the next run deletes the name again,
    which both storages accept for a file that is gone. One export whose
    file cannot be deleted does not stop the others; the run then raises
    ``ExpiredExportsNotDeleted`` so that the job is retried and seen.
    """
    now = now or timezone.now()
    deleted = 0
    failed: list[str] = []
    due = Export.objects.filter(status=ExportStatus.COMPLETED, expires_at__lte=now).only("id", "file")
    for export in due.iterator(chunk_size=500):
        try:
            if export.file:
                export.file.delete(save=False)
        except Exception:
            logger.exception("Could not delete the file %s of expired export %s", export.file.name, export.id)
            failed.append(str(export.id))
            continue
        if Export.expire(str(export.id)):
            deleted += 1
    if deleted:
        logger.info("Deleted %s expired export file(s)", deleted)
    if failed:
        raise ExpiredExportsNotDeleted(
            f"{len(failed)} expired export file(s) could not be deleted (first: {failed[0]}); {deleted} were"
        )
    return deleted


def expire_exports() -> dict[str, Any]:
    """The daily ``expire-exports`` job: delete the files of exports past ``expires_at``."""
    deleted = delete_expired_exports()
    progress(100, f"Expired {deleted} export(s)", force=True, expired=deleted)
    return {"expired": deleted}


def past_week(now: datetime) -> tuple[datetime, datetime]:
    """The seven whole UTC days before ``now``'s day."""
    end = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return end - timedelta(days=7), end


def export_weekly_job_metrics(now: datetime | None = None) -> Export:
    """Export the past week's per-queue job metrics as a CSV file for staff, and email it to them.

    A retried job carries on with its first attempt's export (one export per
    job, which its type's outcome hooks settle), for the week that attempt
    chose: it runs it again if it did not complete, and emails staff if that
    is what failed (``notifications.email_staff_about`` sends once).
    """
    running = current_job()
    job_id = running.job_id if running else None
    export = None
    if job_id is not None:
        export = Export.objects.filter(job_id=job_id).order_by("created_at").first()
    if export is None:
        metrics = get_dataset(JOB_METRICS_DATASET)
        start, end = past_week(now or timezone.now())
        query = metrics.validate({"finished_after": start.isoformat(), "finished_before": end.isoformat()}, None, None)
        with fenced():
            export = Export.objects.create(
                owner=None,
                job_id=job_id,
                dataset=metrics.name,
                query_params=query.as_json(),
                all_owners=True,
                format=ExportFormat.CSV,
            )
    if export.status in RUNNABLE_STATUSES:
        run_export(str(export.id))
    export.refresh_from_db()
    email_staff_about(export)
    export.refresh_from_db(fields=["staff_notified_at"])
    return export
