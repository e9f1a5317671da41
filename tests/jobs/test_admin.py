"""The admin as queue browser: retry and cancel act only on jobs in a valid state."""

from __future__ import annotations

from typing import Any, cast

import pytest
from django.test import Client

from jobs.dispatch.services import build_job, create_jobs
from jobs.models import Job, JobStatus
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _job(status: str, **fields):
    job = build_job(job_type="canary", queue="maintenance", actor="canary_maintenance", arguments={})
    job.status = status
    for key, value in fields.items():
        setattr(job, key, value)
    return create_jobs([job])[0]


@pytest.fixture
def admin_client() -> Client:
    client = Client()
    client.force_login(cast(Any, UserFactory(is_staff=True, is_superuser=True)))
    return client


def test_retry_action_retries_failed_jobs_and_skips_the_others(admin_client):
    failed, completed = _job(JobStatus.FAILED), _job(JobStatus.COMPLETED)
    response = admin_client.post(
        "/admin/jobs/job/",
        {"action": "retry_jobs", "_selected_action": [str(failed.id), str(completed.id)]},
        follow=True,
    )
    assert response.status_code == 200
    assert "Retried 1 job(s); skipped 1" in response.content.decode()
    failed.refresh_from_db()
    completed.refresh_from_db()
    assert failed.status == JobStatus.QUEUED and completed.status == JobStatus.COMPLETED


def test_cancel_action_cancels_waiting_jobs_and_skips_finished_ones(admin_client):
    queued, failed = _job(JobStatus.QUEUED), _job(JobStatus.FAILED)
    response = admin_client.post(
        "/admin/jobs/job/",
        {"action": "cancel_jobs", "_selected_action": [str(queued.id), str(failed.id)]},
        follow=True,
    )
    assert "Cancelled 1 job(s); skipped 1" in response.content.decode()
    assert Job.objects.get(id=queued.id).status == JobStatus.CANCELLED
    assert Job.objects.get(id=failed.id).status == JobStatus.FAILED


def test_traceback_with_html_is_escaped_on_the_detail_page(admin_client):
    job = _job(JobStatus.FAILED, traceback="<script>alert('x')</script>", error_message="<b>boom</b>")
    page = admin_client.get(f"/admin/jobs/job/{job.id}/change/").content.decode()
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert" in page


def test_non_staff_users_are_sent_to_the_login_page():
    client = Client()
    client.force_login(UserFactory())
    response = client.get("/admin/jobs/job/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
