"""The console in a real browser: an operator signs in, reads /admin/queues/ and retries a failed job.

The overview keeps its numbers live without a reload, pausing answers with an admin message,
and the admin's index lists no dead section. Screenshots of the queue overview land in
``var/screenshots/admin-console/`` (overwritten by each run).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from jobs.dispatch.services import build_job, create_jobs
from jobs.models import Job, JobStatus
from jobs.ops.reconciler import reconcile_once
from jobs.ops.stats import roll_up
from tests.factories import UserFactory
from tests.jobs.helpers import start, wait_terminal
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


def _cell(page: Any, queue: str, column: str) -> str:
    return str(page.text_content(f"#queue-{queue} .{column}")).strip()


def _wait_cell(page: Any, queue: str, column: str, condition: str) -> None:
    """Wait until the cell's text, as ``text``, meets a JavaScript ``condition``: the page's own refresh."""
    page.wait_for_function(
        f"(() => {{ const text = document.querySelector('#queue-{queue} .{column}').textContent.trim(); "
        f"return {condition}; }})()",
        timeout=WAIT_MS,
    )


def test_the_overview_updates_its_counts_workers_charts_and_reconciler_without_a_reload(
    pools, styled_page, styled_login
):
    # Given an operator looking at the queue overview, with nothing waiting and no worker
    operator = UserFactory(is_staff=True, is_superuser=True)
    styled_login(styled_page, operator)
    styled_page.goto("/admin/queues/")
    styled_page.wait_for_selector("#queue-table", timeout=WAIT_MS)
    styled_page.evaluate("window.notReloaded = true")  # gone if the page reloads
    assert (_cell(styled_page, "maintenance", "count-queued"), _cell(styled_page, "maintenance", "workers")) == (
        "0",
        "0",
    )
    assert _cell(styled_page, "maintenance", "completed-24h") == "0"
    assert "no run recorded" in styled_page.text_content("#duty-reconciler")

    # When three jobs are started on the maintenance queue
    customer = UserFactory()
    jobs = [start("test-record-run", customer, queue="maintenance") for _ in range(3)]
    # Then the waiting count shows them
    _wait_cell(styled_page, "maintenance", "count-queued", "text === '3'")
    _screenshot(styled_page, "queues-live-waiting", "#queue-table")

    # When a worker runs them and the scheduler's duties (the statistics roll-up, the reconciler) pass
    pools("maintenance")
    for job in jobs:
        wait_terminal(job)
    roll_up()
    reconcile_once()

    # Then, without a reload, nothing waits, the worker is listed, the finished jobs are counted and
    # drawn, and the reconciler's last run is shown
    _wait_cell(styled_page, "maintenance", "count-queued", "text === '0'")
    _wait_cell(styled_page, "maintenance", "workers", "text === '1'")
    # (customer work only: the worker's own start canary is system work)
    _wait_cell(styled_page, "maintenance", "completed-24h", "text === '3'")
    # and the worker's start canary shows in System work, also without a reload
    styled_page.wait_for_function(
        "Number(document.querySelector('#work-canary .completed').textContent) >= 1", timeout=WAIT_MS
    )
    styled_page.wait_for_selector("#section-maintenance tr.worker", timeout=WAIT_MS)
    drawn = styled_page.locator("#section-maintenance .chart-24h svg g.bar rect:not([height='0.0'])")
    assert drawn.count() >= 1
    styled_page.wait_for_selector("#duty-reconciler .duty-text:text('last run')", timeout=WAIT_MS)
    assert styled_page.evaluate("window.notReloaded") is True
    _screenshot(styled_page, "queues-live-after-run")


def test_pausing_and_resuming_a_queue_answer_with_an_admin_message(styled_page, styled_login):
    # Given an operator on the queue overview
    styled_login(styled_page, UserFactory(is_staff=True, is_superuser=True))
    styled_page.goto("/admin/queues/")
    styled_page.wait_for_selector("#queue-table", timeout=WAIT_MS)

    # When they pause the maintenance queue
    styled_page.click("#queue-maintenance input[value='Pause queue']")

    # Then the admin says so in its message bar, and the queue shows paused
    message = styled_page.wait_for_selector(".messagelist li.warning", timeout=WAIT_MS)
    assert message.text_content() == "Queue maintenance paused: its jobs wait until you resume it."
    assert _cell(styled_page, "maintenance", "queue-state") == "paused"
    _screenshot(styled_page, "queues-paused-message")

    # When they resume it, the message says that too
    styled_page.click("#queue-maintenance input[value='Resume queue']")
    message = styled_page.wait_for_selector(".messagelist li.success", timeout=WAIT_MS)
    assert message.text_content() == "Queue maintenance resumed."
    assert _cell(styled_page, "maintenance", "queue-state") == "running"


def test_the_admin_index_lists_no_empty_tasks_or_scheduler_job_pages(styled_page, styled_login):
    # Given an operator who may see everything
    styled_login(styled_page, UserFactory(is_staff=True, is_superuser=True))
    # When they open the admin's index
    styled_page.goto("/admin/")
    styled_page.wait_for_selector("#content-main", timeout=WAIT_MS)
    # Then the jobs are listed, and neither django-dramatiq's tasks nor django-apscheduler's jobs
    links = [text.strip() for text in styled_page.locator("#content-main th[scope=row] a").all_text_contents()]
    assert "Jobs" in links and "Schedules" in links
    for dead in ("Tasks", "Django jobs", "Django job executions"):
        assert dead not in links
    sections = styled_page.text_content("#content-main")
    assert "Django_Dramatiq" not in sections and "Django Dramatiq" not in sections
    assert "Django APScheduler" not in sections
    _screenshot(styled_page, "admin-index")


def test_operator_sees_each_scheduler_live_or_down_on_the_queue_overview(web_server, page, login):
    from tests.jobs.test_scheduling import SchedulerRun
    from tests.workers import wait_for

    # Given two schedulers, one of which is killed and has stopped beating
    operator = UserFactory(is_staff=True, is_superuser=True)
    live, killed = SchedulerRun("browser-live").start(), SchedulerRun("browser-killed").start()
    try:
        assert live.proc is not None and killed.proc is not None
        login(page, operator)
        killed.kill()

        # When the operator opens the queue overview (again, until the killed one is past its beats)
        def shows_one_down() -> bool:
            page.goto("/admin/queues/")
            page.wait_for_selector("#schedulers", timeout=WAIT_MS)
            return page.locator("#schedulers tr.scheduler.down").count() == 1

        wait_for(shows_one_down, 90, 0.5, "the killed scheduler to show down")  # a loaded CI machine took over 30 s

        # Then the schedulers block shows both: the live one with a green badge, the killed one down
        live_row = page.locator("#schedulers tr.scheduler.live")
        down_row = page.locator("#schedulers tr.scheduler.down")
        assert live_row.count() == 1
        assert str(live.proc.pid) in live_row.inner_text() and str(killed.proc.pid) in down_row.inner_text()
        badge = live_row.locator(".queue-badge")
        assert badge.inner_text() == "live" and badge.is_visible()
        assert badge.evaluate("e => getComputedStyle(e).backgroundColor") == "rgb(25, 135, 84)"
        assert down_row.locator(".queue-badge").inner_text() == "down"
        _screenshot(page, "schedulers", "#schedulers")
    finally:
        live.stop()
