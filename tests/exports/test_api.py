"""The exports API: validation naming the offender, ownership, the export and its download."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from exports.models import Export, ExportStatus
from jobs.models import Job

pytestmark = pytest.mark.django_db


def _post(client, query_params, export_format="csv"):
    return client.post("/api/jobs/csv-export", {"query_params": query_params, "format": export_format}, format="json")


@pytest.mark.parametrize(
    ("query_params", "field", "offender"),
    [
        ({"dataset": "payroll"}, "dataset", "'payroll'"),
        ({"dataset": "jobs", "filters": {"password": "x"}}, "filters", "'password'"),
        ({"dataset": "jobs", "fields": ["id", "traceback"]}, "fields", "'traceback'"),
        ({"dataset": "jobs", "ordering": "-arguments"}, "ordering", "'-arguments'"),
        ({"dataset": "jobs", "filters": {"created_after": "yesterday"}}, "filters", "'created_after'"),
        ({"dataset": "jobs", "filters": {"status": ["done"]}}, "filters", "'status'"),
        ({"dataset": "documents", "filters": {"min_pages": "1" + "0" * 30}}, "filters", "'min_pages'"),
        ({"dataset": "jobs", "filters": {"owner_id": -(2**63) - 1}}, "filters", "'owner_id'"),
    ],
)
def test_unknown_names_answer_400_naming_the_offender(user_api, query_params, field, offender):
    response = _post(user_api, query_params)
    assert response.status_code == 400
    message = response.json()["errors"]["query_params"][field][0]
    assert offender in message
    assert not Export.objects.exists() and not Job.objects.exists()


def test_unknown_query_key_answers_400(user_api):
    response = _post(user_api, {"dataset": "jobs", "filter": {}})
    assert response.status_code == 400
    assert "'filter'" in response.json()["errors"]["query_params"][0]


def test_unknown_format_answers_400(user_api):
    assert _post(user_api, {"dataset": "jobs"}, "pdf").status_code == 400


def test_staff_only_dataset_is_refused_to_users(user_api, staff_api):
    assert _post(user_api, {"dataset": "job-metrics"}).status_code == 400
    assert _post(staff_api, {"dataset": "job-metrics"}).status_code == 202


def test_export_request_answers_202_and_links_export_and_job(user_api, user):
    response = _post(user_api, {"dataset": "jobs", "fields": ["id", "status"]}, "xlsx")
    assert response.status_code == 202
    job = Job.objects.get(id=response.json()["job_id"])
    export = Export.objects.get()
    assert export.job_id == job.id and export.owner == user and export.format == "xlsx"
    assert export.query_params == {"filters": {}, "fields": ["id", "status"], "ordering": "created_at"}
    assert job.queue == "csv-export" and job.arguments == {"export_id": str(export.id)}
    status = user_api.get(f"/api/jobs/{job.id}/status").json()
    assert status["data"]["export_id"] == str(export.id)


def test_defaults_are_every_field_and_natural_order(user_api):
    _post(user_api, {"dataset": "jobs"})
    export = Export.objects.get()
    assert export.query_params["fields"][:3] == ["id", "type", "queue"]
    assert export.query_params["ordering"] == "created_at"
    assert export.all_owners is False


def test_export_is_visible_to_its_owner_and_staff_only(user_api, staff_api, other_user):
    _post(user_api, {"dataset": "jobs"})
    export = Export.objects.get()
    stranger = APIClient()
    stranger.force_authenticate(other_user)
    assert user_api.get(f"/api/exports/{export.id}").json()["status"] == "pending"
    assert staff_api.get(f"/api/exports/{export.id}").status_code == 200
    assert stranger.get(f"/api/exports/{export.id}").status_code == 404
    assert stranger.get(f"/api/exports/{export.id}/download").status_code == 404
    assert stranger.get("/api/exports").json()["count"] == 0


def test_download_streams_the_file_with_its_type_and_name(user_api, media_root):
    _post(user_api, {"dataset": "jobs"}, "xlsx")
    export = Export.objects.get()
    (media_root / "exports").mkdir()
    (media_root / "exports" / "x.xlsx").write_bytes(b"PK-content")
    Export.mark_running(str(export.id))
    Export.mark_completed(str(export.id), file="exports/x.xlsx", row_count=0, size_bytes=10)
    response = user_api.get(f"/api/exports/{export.id}/download")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert f'filename="jobs-{export.created_at:%Y%m%d}' in response["Content-Disposition"]
    assert b"".join(response.streaming_content) == b"PK-content"
    detail = user_api.get(f"/api/exports/{export.id}").json()
    assert detail["download_url"].endswith(f"/api/exports/{export.id}/download")


def test_download_of_unfinished_export_answers_409_and_expired_410(user_api):
    _post(user_api, {"dataset": "jobs"})
    export = Export.objects.get()
    assert user_api.get(f"/api/exports/{export.id}/download").status_code == 409
    Export.objects.filter(id=export.id).update(status=ExportStatus.EXPIRED)
    assert user_api.get(f"/api/exports/{export.id}/download").status_code == 410


def test_admin_lists_exports_including_the_staff_analytics(staff, user_api, client):
    _post(user_api, {"dataset": "jobs"})
    Export.objects.create(dataset="job-metrics", all_owners=True)
    client.force_login(staff)
    staff.is_superuser = True
    staff.save()
    page = client.get("/admin/exports/export/")
    assert page.status_code == 200
    assert b"staff (system)" in page.content and b"job-metrics" in page.content
