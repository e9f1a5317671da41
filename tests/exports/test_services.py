"""Writing exports from PostgreSQL: exact round trips, filters, ownership, progress, expiry."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from exports.models import Export, ExportStatus
from exports.services import create_export, delete_expired_exports, validate_export_request, write_export
from jobs.models import Job, JobStatus
from jobs.ops.stats import roll_up_hour
from jobs.state import events
from tests.exports.helpers import (
    BASE,
    JOB_METRICS_HEADER,
    expected_rows,
    read_csv,
    read_xlsx,
    seed_jobs,
    typed_csv_row,
    typed_xlsx_row,
)

pytestmark = pytest.mark.django_db(transaction=True)


def _export(user, query_params, export_format="csv", job_id=None):
    dataset, query = validate_export_request(user, query_params)
    export = create_export(user, dataset, query, export_format)
    Export.mark_running(str(export.id))
    relative = f"exports/test-{export.id}.{export_format}"
    written = write_export(str(export.id), relative, job_id=job_id)
    export.file.name = relative
    return export, written


def _csv_rows(export):
    header, rows = read_csv(export.file.open("rb").read())
    return header, [typed_csv_row(header, row) for row in rows]


def test_csv_export_matches_the_database_rows_exactly(media_root, user):
    # Given finished jobs, some with quotes, commas and empty values
    jobs = seed_jobs(user, 25)
    # When they are exported as CSV
    export, written = _export(user, {"dataset": "jobs", "filters": {"type": "report"}})
    # Then the file reads back, through the csv module, to exactly the database rows
    header, rows = _csv_rows(export)
    assert header == list(expected_rows(jobs)[0])
    assert rows == expected_rows(jobs)
    assert written["rows"] == written["total_rows"] == 25


def test_xlsx_export_matches_the_database_rows_exactly(media_root, user):
    jobs = seed_jobs(user, 25)
    export, written = _export(user, {"dataset": "jobs", "filters": {"type": "report"}}, "xlsx")
    header, rows = read_xlsx(media_root / export.file.name)
    assert header == list(expected_rows(jobs)[0])
    assert [typed_xlsx_row(header, row) for row in rows] == expected_rows(jobs)
    assert written["rows"] == 25


def test_user_exports_only_their_own_rows(media_root, user, other_user):
    mine = seed_jobs(user, 4)
    seed_jobs(other_user, 3, start=10)
    export, _ = _export(user, {"dataset": "jobs", "fields": ["id"]})
    _, rows = _csv_rows(export)
    assert [row["id"] for row in rows] == [str(job.id) for job in sorted(mine, key=lambda j: j.created_at)]


def test_staff_export_every_users_rows(media_root, staff, user, other_user):
    seed_jobs(user, 4)
    seed_jobs(other_user, 3, start=10)
    export, written = _export(staff, {"dataset": "jobs", "fields": ["owner"], "filters": {"type": "report"}})
    _, rows = _csv_rows(export)
    assert sorted({row["owner"] for row in rows}) == sorted([user.username, other_user.username])
    assert written["rows"] == 7


def test_filters_fields_and_ordering_shape_the_export(media_root, user):
    jobs = seed_jobs(user, 12)
    after = BASE + timedelta(minutes=3)
    export, _ = _export(
        user,
        {
            "dataset": "jobs",
            "filters": {"status": ["failed"], "created_after": after.isoformat(), "queue": "thumbnails"},
            "fields": ["id", "status"],
            "ordering": "-created_at",
        },
    )
    header, rows = _csv_rows(export)
    wanted = [
        job
        for job in sorted(jobs, key=lambda j: j.created_at, reverse=True)
        if job.status == JobStatus.FAILED and job.created_at >= after and job.queue == "thumbnails"
    ]
    assert header == ["id", "status"]
    assert rows == [{"id": str(job.id), "status": "failed"} for job in wanted]
    assert wanted  # the filter selects something


def test_filter_values_are_bound_parameters_never_sql(media_root, user):
    # Given a row whose error holds a quote
    seed_jobs(user, 3)
    # When filter values look like SQL
    hostile, _ = _export(user, {"dataset": "jobs", "filters": {"error_contains": "'; DROP TABLE jobs_job; --"}})
    quoted, _ = _export(user, {"dataset": "jobs", "filters": {"error_contains": "it's"}}, "xlsx")
    # Then they are compared as text: nothing matches the first, the quote matches the second
    assert _csv_rows(hostile)[1] == []
    assert len(read_xlsx(media_root / quoted.file.name)[1]) == 1
    assert "jobs_job" in connection.introspection.table_names()


def test_progress_reports_rows_written_of_total(media_root, user, settings):
    # Given a running job, small chunks and no throttling
    settings.EXPORT_CHUNK_ROWS = 10
    settings.JOBS_PROGRESS_MIN_INTERVAL_S = 0
    seed_jobs(user, 35)
    job = Job.objects.create(type="csv-export", queue="csv-export", actor="csv_export", status=JobStatus.ACTIVE)
    seen = []
    events.add_progress_listener(lambda job_id, percent, data: seen.append((job_id, percent, data)))
    try:
        # When an Excel export of them runs for that job
        _export(user, {"dataset": "jobs", "filters": {"type": "report"}}, "xlsx", job_id=str(job.id))
    finally:
        events._listeners.pop()
    # Then it reported each chunk as "n of total" with its export id
    written = [data["rows_written"] for job_id, _, data in seen if job_id == str(job.id)]
    assert written == [0, 10, 20, 30, 35]
    assert seen[2][2]["message"] == "Generating report... 20 of 35 records"
    assert seen[2][1] == 57
    assert {data["total_rows"] for _, _, data in seen} == {35}
    job.refresh_from_db()
    assert job.progress_data["rows_written"] == 35


def test_cancelled_job_stops_the_export_at_its_next_progress_write(media_root, user, settings):
    from exports.progress import ExportStopped

    settings.EXPORT_CHUNK_ROWS = 5
    settings.JOBS_PROGRESS_MIN_INTERVAL_S = 0
    seed_jobs(user, 20)
    job = Job.objects.create(
        type="csv-export",
        queue="csv-export",
        actor="csv_export",
        status=JobStatus.ACTIVE,
        cancel_requested_at=timezone.now(),
    )
    with pytest.raises(ExportStopped):
        _export(user, {"dataset": "jobs"}, "xlsx", job_id=str(job.id))
    assert not list((media_root / "exports").glob("*"))


def test_expired_export_files_are_deleted_and_rows_kept(media_root, user):
    seed_jobs(user, 2)
    old, _ = _export(user, {"dataset": "jobs"})
    fresh, _ = _export(user, {"dataset": "jobs"})
    for export in (old, fresh):
        Export.mark_completed(str(export.id), file=export.file.name)
    Export.objects.filter(id=old.id).update(expires_at=timezone.now() - timedelta(minutes=1))
    assert delete_expired_exports() == 1
    old.refresh_from_db()
    assert old.status == ExportStatus.EXPIRED and not old.file
    assert not (media_root / f"exports/test-{old.id}.csv").exists()
    assert (media_root / f"exports/test-{fresh.id}.csv").exists()


def test_job_metrics_dataset_sums_each_queue_for_the_week(media_root, staff, user, settings):
    seed_jobs(user, 12)  # finished on 2026-11-02
    seed_jobs(user, 3, start=20000)  # two weeks later: outside the window
    # The dataset reads the statistics' hourly buckets: the roll-up counts those hours (kept 60 days here)
    settings.JOBS_RETENTION_DAYS = 60
    roll_up_hour(BASE)
    roll_up_hour(BASE + timedelta(minutes=20000))
    export, _ = _export(
        staff,
        {
            "dataset": "job-metrics",
            "filters": {
                "finished_after": "2026-11-02T00:00:00Z",
                "finished_before": "2026-11-09T00:00:00Z",
            },
        },
    )
    header, rows = read_csv(export.file.open("rb").read())
    assert header == JOB_METRICS_HEADER
    # One row per queue and origin: the seeded jobs are customer work (a job's default origin)
    by_queue = {row[0]: row for row in rows}
    assert {row[1] for row in rows} == {"customer"}
    # even n -> thumbnails (0,2,4,6,8,10), failed when n % 3 == 0 (0, 6); odd n took two attempts
    assert by_queue["thumbnails"][2:8] == ["6", "4", "2", "0", "0", "0.6667"]
    assert by_queue["maintenance"][2:8] == ["6", "4", "2", "0", "6", "0.6667"]


def test_excel_export_beyond_a_sheets_rows_is_refused(media_root, user, monkeypatch):
    from exports.exceptions import ExportTooLarge

    monkeypatch.setattr("exports.writers.EXCEL_MAX_ROWS", 5)  # PostgreSQL's path checks there
    monkeypatch.setattr("exports.queries.EXCEL_MAX_ROWS", 5)  # and the other databases' here
    seed_jobs(user, 5)
    with pytest.raises(ExportTooLarge, match="an Excel sheet holds at most"):
        _export(user, {"dataset": "jobs"}, "xlsx")
    assert not list((media_root / "exports").glob("*"))
