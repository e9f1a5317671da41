"""A tenant cannot jump the queue: ``priority: high`` is for staff and users given the permission.

Against the real server (uvicorn), with tokens from ``POST /api/auth/token``.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests
from django.contrib.auth.models import Permission

from documents.models import Document
from jobs.models import Job
from tests.documents.pdfs import text_pdf_bytes
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)
PASSWORD = "secret-pass-123"  # tests/factories.py


def _token(server: Any, user: Any) -> dict[str, str]:
    response = requests.post(
        f"{server.url}/api/auth/token", data={"username": user.username, "password": PASSWORD}, timeout=10
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Token {response.json()['token']}"}


def _upload(server: Any, headers: dict[str, str]) -> str:
    files = {"file": ("one.pdf", text_pdf_bytes(["one page"]), "application/pdf")}
    response = requests.post(f"{server.url}/api/documents", files=files, headers=headers, timeout=30)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def test_a_tenant_asking_for_high_priority_gets_a_403_naming_the_field_and_no_job(web_server):
    # Given a tenant with a document
    tenant = UserFactory()
    headers = _token(web_server, tenant)
    document = _upload(web_server, headers)

    # When they start its OCR at high priority
    response = requests.post(
        f"{web_server.url}/api/jobs/pdf-ocr",
        json={"file_id": document, "priority": "high"},
        headers=headers,
        timeout=10,
    )

    # Then they are refused, the answer names the field, and nothing was queued
    assert response.status_code == 403, response.text
    assert "priority" in response.json()["errors"]
    assert response.json()["detail"] == "You do not have permission to perform this action: priority"
    assert not Job.objects.filter(type="pdf-ocr").exists()
    # And the same request at normal priority is accepted
    normal = requests.post(
        f"{web_server.url}/api/jobs/pdf-ocr", json={"file_id": document}, headers=headers, timeout=10
    )
    assert normal.status_code == 202, normal.text
    assert Job.objects.get(type="pdf-ocr").priority == "normal"


@pytest.mark.parametrize("who", ["staff", "granted"])
def test_staff_and_users_given_the_permission_may_set_high_priority(web_server, who):
    user = UserFactory(is_staff=who == "staff")
    if who == "granted":
        user.user_permissions.add(Permission.objects.get(codename="set_high_priority", content_type__app_label="jobs"))
    headers = _token(web_server, user)
    document = _upload(web_server, headers)

    response = requests.post(
        f"{web_server.url}/api/jobs/pdf-ocr",
        json={"file_id": document, "priority": "high"},
        headers=headers,
        timeout=10,
    )

    assert response.status_code == 202, response.text
    job = Job.objects.get(id=response.json()["job_id"])
    assert job.priority == "high"
    assert (job.created_via, job.created_by) == ("api", user.username)
    assert Document.objects.filter(id=document).exists()
