"""The csv-export and weekly metrics jobs on real workers: progress, memory ceiling, size."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from exports.models import Export, ExportStatus
from jobs.models import JobStatus
from tests.databases import postgresql_only
from tests.exports.helpers import expected_rows, read_csv, seed_jobs, seed_many_jobs, typed_csv_row
from tests.jobs.helpers import canary, start, wait_terminal


def _export_job(user, export_format="csv", **query_params):
    return start("csv-export", user, query_params={"dataset": "jobs", **query_params}, format=export_format)


@pytest.mark.slow
def test_csv_export_job_finishes_with_its_download_link_and_row_count(pools, media_root, user):
    # Given a csv-export worker and some of the user's jobs
    pools("csv-export", env={"MEDIA_ROOT": str(media_root)})
    jobs = seed_jobs(user, 30)
    # When the user asks for a CSV export through the job
    job = wait_terminal(_export_job(user, filters={"type": "report"}), timeout=60)
    # Then it completes with the export's id, counts and link in its data
    assert job.status == JobStatus.COMPLETED, job.error_message
    export = Export.objects.get(job=job)
    assert job.progress_data["export_id"] == str(export.id)
    assert job.progress_data["rows_written"] == job.progress_data["total_rows"] == 30
    assert job.progress_data["download_url"] == f"/api/exports/{export.id}/download"
    assert export.status == ExportStatus.COMPLETED and export.row_count == 30
    assert 0 < export.peak_memory_mb < 256
    # And the downloaded file is the database rows
    client = APIClient()
    client.force_authenticate(user)
    response = client.get(job.progress_data["download_url"])
    assert response["Content-Type"] == "text/csv"
    header, rows = read_csv(b"".join(response.streaming_content))
    assert [typed_csv_row(header, row) for row in rows] == expected_rows(jobs)


@pytest.mark.slow
def test_export_over_the_memory_ceiling_fails_cleanly_and_the_worker_goes_on(pools, media_root, user):
    # Given a worker whose exports may use less memory than any export needs
    pool = pools("csv-export", env={"MEDIA_ROOT": str(media_root), "EXPORT_MEMORY_CEILING_MB": "5"})
    worker_pids = {process.pid for process in pool.worker_processes()}
    seed_jobs(user, 10)
    # When an export runs there
    job = wait_terminal(_export_job(user, "xlsx"), timeout=60)
    # Then it fails at once, not retried, with a clear message, leaving no file behind
    assert job.status == JobStatus.FAILED
    assert "export stopped: it needed more than 5 MB" in job.error_message
    assert job.attempts == 1
    export = Export.objects.get(job=job)
    assert export.status == ExportStatus.FAILED
    assert export.error_message == "export stopped: it needed more than 5 MB"
    assert not list(media_root.rglob("*.part"))
    # And the same worker process serves the queue's next job
    assert wait_terminal(canary("csv-export"), timeout=30).status == JobStatus.COMPLETED
    assert {process.pid for process in pool.worker_processes()} == worker_pids


@pytest.mark.slow
@postgresql_only("COPY streams the rows (and generate_series seeds them); the 30-row export covers SQLite")
def test_hundred_thousand_row_export_completes(pools, media_root, user):
    pools("csv-export", env={"MEDIA_ROOT": str(media_root)})
    seed_many_jobs(user, 100_000)
    job = wait_terminal(_export_job(user, filters={"type": "bulk"}, fields=["id", "created_at"]), timeout=120)
    assert job.status == JobStatus.COMPLETED, job.error_message
    assert job.progress_data["rows_written"] == 100_000
    assert job.progress_data["message"] == "Export ready: 100,000 records"
    export = Export.objects.get(job=job)
    with open(media_root / export.file.name, "rb") as handle:
        assert sum(1 for _ in handle) == 100_001


@pytest.mark.slow
def test_weekly_job_metrics_job_exports_a_staff_csv(pools, media_root, staff, mail_server):
    pools("maintenance", env={"MEDIA_ROOT": str(media_root), **mail_server[1]})
    job = wait_terminal(start("weekly-job-metrics", staff), timeout=60)
    assert job.status == JobStatus.COMPLETED, job.error_message
    export = Export.objects.get(id=job.result["export_id"])
    assert export.owner is None and export.dataset == "job-metrics" and export.status == ExportStatus.COMPLETED
    header, _ = read_csv((media_root / export.file.name).read_bytes())
    assert header[:4] == ["queue", "origin", "jobs", "completed"]
    staff_client = APIClient()
    staff_client.force_authenticate(staff)
    assert staff_client.get(job.result["download_url"]).status_code == 200
