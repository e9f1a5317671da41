"""The console in a real browser: an operator signs in, reads /admin/queues/ and retries a failed job."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.dispatch.services import build_job, create_jobs
from jobs.models import Job, JobStatus
from jobs.ops.stats import roll_up
from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WAIT_MS = 30_000
PASSWORD = "secret-pass-123"  # tests.factories.UserFactory's


def _finished(status: str, **fields: object) -> Job:
    job = build_job(job_type="canary", queue="maintenance", actor="canary_maintenance", arguments={"queue": "x"})
    now = timezone.now()
    job.status, job.started_at, job.finished_at = status, now - timedelta(seconds=2), now
    for key, value in fields.items():
        setattr(job, key, value)
    return create_jobs([job])[0]


def test_operator_signs_in_sees_the_queue_charts_and_retries_a_failed_job(web_server, page):
    # Given an operator, a completed and a failed job, and statistics rolled up
    operator = UserFactory(is_staff=True, is_superuser=True)
    _finished(JobStatus.COMPLETED)
    failed = _finished(JobStatus.FAILED, error_message="disk full")
    roll_up()

    # When the operator opens the queue overview, they are sent to the admin's login and sign in
    page.goto("/admin/queues/")
    page.fill("#id_username", operator.username)
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")

    # Then they land on the overview with both charts of every queue drawn
    page.wait_for_selector("#queue-table", timeout=WAIT_MS)
    assert page.url.endswith("/admin/queues/")
    charts = page.locator("svg.throughput-chart")
    assert charts.count() == 10
    maintenance_24h = page.locator("#section-maintenance svg.throughput-chart").first
    assert maintenance_24h.is_visible() and maintenance_24h.bounding_box()["width"] > 0
    drawn = page.locator("#section-maintenance svg.throughput-chart g.bar rect:not([height='0.0'])")
    assert drawn.count() >= 2  # the completed and the failed job's bars
    assert page.text_content("#queue-maintenance .failed-24h").strip() == "1"

    # When they select the failed job in the job list and run "retry"
    page.goto("/admin/jobs/job/?status__exact=failed")
    page.check(f"input[name=_selected_action][value='{failed.pk}']")
    page.select_option("select[name=action]", "retry_jobs")
    page.click("button[name=index]")

    # Then the admin reports it and the job waits for a worker again
    page.wait_for_selector("text=Retried 1 job(s); skipped 0", timeout=WAIT_MS)
    failed.refresh_from_db()
    assert failed.status == JobStatus.QUEUED
