"""Export expiry: a download past ``expires_at`` answers 410 at once; the daily job deletes the file."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone
from rest_framework.test import APIClient

from exports.exceptions import ExpiredExportsNotDeleted
from exports.models import Export, ExportFormat, ExportStatus
from exports.services import delete_expired_exports
from jobs.models import Job, JobStatus
from jobs.models.schedule import FireOutcome
from jobs.ops.scheduling.firing import run_now
from tests.jobs.helpers import wait_terminal

CONTENT = b"id,type\n1,report\n"


def _completed_export(owner: Any, name: str, *, expires_in: timedelta) -> Export:
    """A completed export whose file is stored (the configured storage) and which expires ``expires_in`` from now."""
    stored = default_storage.save(f"exports/{name}.csv", ContentFile(CONTENT))
    export = Export.objects.create(
        owner=owner, dataset="jobs", query_params={}, format=ExportFormat.CSV, status=ExportStatus.RUNNING
    )
    assert Export.mark_completed(str(export.id), file=stored, row_count=1, size_bytes=len(CONTENT))
    Export.objects.filter(id=export.id).update(expires_at=timezone.now() + expires_in)
    return Export.objects.get(id=export.id)


def _client(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _run_daily_expiry(default_schedule: Any) -> Job:
    schedule = default_schedule("export expiry")
    assert (schedule.cron, schedule.job_type, schedule.paused) == ("30 0 * * *", "expire-exports", False)
    fired = run_now(schedule)
    assert fired is not None and fired.outcome == FireOutcome.ENQUEUED and fired.job is not None
    assert fired.job.queue == "maintenance"
    job = wait_terminal(fired.job, timeout=60)
    assert job.status == JobStatus.COMPLETED, job.error_message
    return job


def test_an_export_past_its_expiry_answers_410_before_the_daily_job_has_run(media_root, user):
    # Given a completed export whose expiry passed a minute ago; its file is still stored
    export = _completed_export(user, "late", expires_in=timedelta(minutes=-1))
    assert default_storage.exists(export.file.name)
    api = _client(user)
    # When its owner downloads it
    response = api.get(f"/api/exports/{export.id}/download")
    # Then it is gone (410), with a JSON body saying why and since when
    assert response.status_code == 410
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "detail": "this export has expired; start a new one",
        "expires_at": export.expires_at.isoformat(),
    }
    # And the export reads as expired, with no download link
    detail = api.get(f"/api/exports/{export.id}").json()
    assert (detail["status"], detail["download_url"]) == ("expired", None)


@pytest.mark.slow
def test_daily_expiry_job_deletes_expired_files_and_leaves_current_exports_downloadable(
    pools, media_root, default_schedule, user
):
    # Given an export that expired an hour ago and one that expires tomorrow, both stored
    expired = _completed_export(user, "expired", expires_in=timedelta(hours=-1))
    current = _completed_export(user, "current", expires_in=timedelta(days=1))
    pools("maintenance", env={"MEDIA_ROOT": str(media_root)})
    # When the daily "export expiry" schedule runs on a worker
    job = _run_daily_expiry(default_schedule)
    # Then the expired file is deleted and the export recorded expired; its download answers 410
    assert job.result == {"expired": 1}
    assert not (media_root / expired.file.name).exists()
    expired.refresh_from_db()
    assert (expired.status, expired.file.name) == (ExportStatus.EXPIRED, "")
    api = _client(user)
    gone = api.get(f"/api/exports/{expired.id}/download")
    assert gone.status_code == 410 and "expired" in gone.json()["detail"]
    # And the current export still downloads, byte for byte
    current.refresh_from_db()
    assert current.status == ExportStatus.COMPLETED
    response = api.get(f"/api/exports/{current.id}/download")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == CONTENT


@pytest.mark.slow
def test_on_s3_the_daily_expiry_job_deletes_the_expired_object_from_the_bucket(
    pools, s3_bucket, default_schedule, user, tmp_path
):
    # Given exports stored in the bucket (this process and the worker share nothing else)
    expired = _completed_export(user, "expired", expires_in=timedelta(hours=-1))
    current = _completed_export(user, "current", expires_in=timedelta(days=1))
    assert set(s3_bucket.objects()) == {expired.file.name, current.file.name}
    pools("maintenance", env={**s3_bucket.env, "MEDIA_ROOT": str(tmp_path / "worker-media")})
    # When the daily expiry job runs
    job = _run_daily_expiry(default_schedule)
    # Then only the expired object is gone from the bucket
    assert job.result == {"expired": 1}
    assert set(s3_bucket.objects()) == {current.file.name}
    expired.refresh_from_db()
    assert expired.status == ExportStatus.EXPIRED


def test_a_file_the_storage_cannot_delete_does_not_stop_the_others_and_fails_the_run(media_root, user):
    # Given two expired exports, the first's stored name a non-empty directory (the storage refuses it)
    stuck = _completed_export(user, "stuck", expires_in=timedelta(hours=-2))
    (media_root / "exports" / "refused").mkdir()
    (media_root / "exports" / "refused" / "keep").write_text("x")
    Export.objects.filter(id=stuck.id).update(file="exports/refused")
    other = _completed_export(user, "other", expires_in=timedelta(hours=-1))
    # When the expiry runs
    with pytest.raises(ExpiredExportsNotDeleted, match="1 expired export file"):
        delete_expired_exports()
    # Then the other file is deleted and its export expired; the refused one waits for the next run
    other.refresh_from_db()
    assert other.status == ExportStatus.EXPIRED and not (media_root / "exports" / "other.csv").exists()
    assert Export.objects.get(id=stuck.id).status == ExportStatus.COMPLETED
    # And its download answers 410 all the same
    assert _client(user).get(f"/api/exports/{stuck.id}/download").status_code == 410
