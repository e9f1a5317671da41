"""The console in a real browser: an operator signs in, reads /admin/queues/ and retries a failed job.

Screenshots of the queue overview land in ``var/screenshots/admin-console/`` (overwritten by each run).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from jobs.dispatch.services import build_job, create_jobs
from jobs.models import Job, JobStatus
from jobs.ops.stats import roll_up
from tests.factories import UserFactory
from tests.web_server import session_cookie
from tests.workers import ROOT

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WAIT_MS = 30_000
PASSWORD = "secret-pass-123"  # tests.factories.UserFactory's
# The admin's base.css: .module caption { color: var(--header-link-color) }: --primary-fg, #fff.
WHITE = "rgb(255, 255, 255)"
SCREENSHOTS = ROOT / "var" / "screenshots" / "admin-console"


def _finished(status: str, job_type: str = "test-record-run", **fields: object) -> Job:
    """A finished job; a customer's type by default (the queue rows count customer work only)."""
    job = build_job(job_type=job_type, queue="maintenance", actor="canary_maintenance", arguments={"queue": "x"})
    now = timezone.now()
    job.status, job.started_at, job.finished_at = status, now - timedelta(seconds=2), now
    for key, value in fields.items():
        setattr(job, key, value)
    return create_jobs([job])[0]


def _waiting_thumbnails(owner: Any, count: int) -> None:
    """Thumbnail jobs of ``owner`` waiting in Redis (no worker runs here)."""
    jobs = [
        build_job(job_type="thumbnails", queue="thumbnails", actor="make_thumbnails", arguments={}, owner=owner)
        for _ in range(count)
    ]
    create_jobs(jobs)  # autocommit: sent at once


def _screenshot(page: Any, name: str, selector: str | None = None) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    if selector is None:
        page.screenshot(path=str(path), full_page=True)
    else:
        page.locator(selector).screenshot(path=str(path))
    print(f"screenshot: {path}")


def test_operator_signs_in_sees_the_queue_charts_and_retries_a_failed_job(web_server, page):
    # Given an operator, a completed and a failed job, a canary, and statistics rolled up
    operator = UserFactory(is_staff=True, is_superuser=True)
    _finished(JobStatus.COMPLETED)
    failed = _finished(JobStatus.FAILED, error_message="disk full")
    _finished(JobStatus.COMPLETED, job_type="canary")
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
    # The canary is not in the queue's figures but in the System work section, on its own row
    assert page.text_content("#queue-maintenance .completed-24h").strip() == "1"
    assert page.locator("#system-work h2").is_visible()
    assert page.text_content("#work-canary .completed").strip() == "1"
    assert page.text_content("#work-maintenance .completed").strip() == "0"
    _screenshot(page, "system-work", "#system-work")

    # When they select the failed job in the job list and run "retry"
    page.goto("/admin/jobs/job/?status__exact=failed")
    page.check(f"input[name=_selected_action][value='{failed.pk}']")
    page.select_option("select[name=action]", "retry_jobs")
    page.click("button[name=index]")

    # Then the admin reports it and the job waits for a worker again
    page.wait_for_selector("text=Retried 1 job(s); skipped 0", timeout=WAIT_MS)
    failed.refresh_from_db()
    assert failed.status == JobStatus.QUEUED


def test_operator_sees_each_queues_cap_and_its_busiest_owners_by_name(production_server, browser):
    # Given two customers' thumbnail jobs waiting, one customer with more than the other
    operator = UserFactory(is_staff=True, is_superuser=True)
    _waiting_thumbnails(UserFactory(username="acme-scans"), 4)
    _waiting_thumbnails(UserFactory(username="bob-uploads"), 1)
    context = browser.new_context(
        base_url=production_server.url, color_scheme="light", viewport={"width": 1280, "height": 900}
    )
    cookie = {"name": settings.SESSION_COOKIE_NAME, "value": session_cookie(operator), "url": production_server.url}
    context.add_cookies([cookie])
    page = context.new_page()
    try:
        # When the operator opens the queue overview
        page.goto("/admin/queues/")
        page.wait_for_selector("#queue-table", timeout=WAIT_MS)

        # Then the queue table shows each queue's cap per owner
        assert page.text_content("#queue-email-sender .max-per-owner").strip() == "3"
        assert page.text_content("#queue-csv-export .max-per-owner").strip() == "none"
        # and the thumbnails section lists its busiest owners by name, busiest first, with their counts
        owners = page.locator("#owners-thumbnails tr.owner")
        owners.first.scroll_into_view_if_needed()
        assert owners.first.is_visible() and page.locator("#owners-thumbnails caption").is_visible()
        shown = [
            [cell.strip() for cell in owners.nth(row).locator("td").all_text_contents()]
            for row in range(owners.count())
        ]
        assert shown == [
            ["acme-scans <acme-scans@example.com>", "4", "0"],
            ["bob-uploads <bob-uploads@example.com>", "1", "0"],
        ]
        assert "Nothing waiting or running." in page.text_content("#owners-csv-export")
        # styled by the admin's stylesheet (its module captions are white on the header colour)
        assert page.eval_on_selector("#owners-thumbnails caption", "e => getComputedStyle(e).color") == WHITE
        _screenshot(page, "queues")
        _screenshot(page, "queues-thumbnails-section", "#section-thumbnails")
    finally:
        context.close()
