"""Fencing of exports (issue 17): a run whose job was taken over records nothing, and its file,
named per attempt, can neither overwrite the winner's nor be named by the row."""

from __future__ import annotations

from pathlib import Path

import pytest

from exports.models import Export, ExportFormat, ExportStatus
from exports.services import export_file_name, run_export
from jobs.core.exceptions import RunSuperseded
from jobs.models import Job
from jobs.state.fencing import Fence
from tests.fencing import HOLDER, STALE, running_as, taken_over

pytestmark = pytest.mark.django_db


def _export(owner, job=None, status=ExportStatus.PENDING):
    return Export.objects.create(
        owner=owner,
        job=job,
        dataset="jobs",
        query_params={"filters": {}, "fields": ["id"], "ordering": "created_at"},
        format=ExportFormat.CSV,
        status=status,
    )


def _write_file(function, spec, cells, **kwargs):
    """Stands in for the export's child process: writes the partial file and says how many rows."""
    Path(spec.partial_path).write_text("id\n1\n")
    return {"rows": 1, "total_rows": 1}


def test_a_stale_run_does_not_start_the_export(user, media_root):
    # Given an export whose job attempt 2 holds on worker "new"
    job = taken_over("csv-export", "csv-export", "csv_export")
    export = _export(user, job)
    # When its stale attempt 1 runs it
    with running_as(job, *STALE), pytest.raises(RunSuperseded):
        run_export(str(export.id))
    # Then the export was not touched and no file was written
    export.refresh_from_db()
    assert (export.status, export.file.name) == (ExportStatus.PENDING, "")
    assert not list(media_root.rglob("*.csv"))


def test_a_run_taken_over_while_writing_deletes_its_file_and_records_nothing(user, media_root, monkeypatch):
    # Given an export that attempt 2 runs, and its file being written
    job = taken_over("csv-export", "csv-export", "csv_export")
    export = _export(user, job)

    def write_then_lose_the_job(*args, **kwargs):
        written = _write_file(*args, **kwargs)
        # When another worker takes the job over meanwhile (attempt 3)
        Job.objects.filter(id=job.id).update(attempts=3, worker_id="newer")
        return written

    monkeypatch.setattr("exports.services.run_in_child", write_then_lose_the_job)
    with running_as(job, *HOLDER), pytest.raises(RunSuperseded):
        run_export(str(export.id))
    # Then the row names no file of this run, and the file it stored is gone again
    export.refresh_from_db()
    assert (export.status, export.file.name, export.row_count) == (ExportStatus.RUNNING, "", None)
    assert not list(media_root.rglob("*.csv"))


def test_the_run_holding_its_job_records_its_own_per_attempt_file(user, media_root, monkeypatch):
    job = taken_over("csv-export", "csv-export", "csv_export")
    export = _export(user, job)
    monkeypatch.setattr("exports.services.run_in_child", _write_file)
    with running_as(job, *HOLDER):
        run_export(str(export.id))
    export.refresh_from_db()
    assert export.status == ExportStatus.COMPLETED
    assert export.file.name == f"exports/{export.id}.a2.csv"
    assert (media_root / export.file.name).read_text() == "id\n1\n"


def test_export_file_names_differ_per_attempt(user):
    export = _export(user)
    names = {
        export_file_name(export, Fence("j", 1, "old")),
        export_file_name(export, Fence("j", 2, "new")),
        export_file_name(export, None),
    }
    assert names == {f"exports/{export.id}.a1.csv", f"exports/{export.id}.a2.csv", f"exports/{export.id}.csv"}
