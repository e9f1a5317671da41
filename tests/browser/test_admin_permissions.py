"""The admin as staff with different permissions see it (issue #16): who may act on jobs, and the audit trail.

Screenshots land in ``var/screenshots/admin-permissions/`` (overwritten by each run).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import Permission

from jobs.dispatch.services import build_job, create_jobs
from jobs.models import AuditEvent, Job, JobStatus
from tests.factories import UserFactory
from tests.web_server import WebServer, session_cookie
from tests.workers import ROOT

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WAIT_MS = 30_000
SCREENSHOTS = ROOT / "var" / "screenshots" / "admin-permissions"
# The admin's base.css (light scheme): #header { background: var(--header-bg) }, --header-bg: #417690.
ADMIN_HEADER_BACKGROUND = "rgb(65, 118, 144)"


@pytest.fixture
def signed_in(production_server: WebServer, browser: Any) -> Iterator[Callable[[Any], Any]]:
    """``signed_in(user)``: a page of the production-like server (styled admin) with ``user`` signed in."""
    contexts: list[Any] = []

    def open_page(user: Any) -> Any:
        context = browser.new_context(
            base_url=production_server.url, color_scheme="light", viewport={"width": 1280, "height": 800}
        )
        contexts.append(context)
        cookie = {"name": settings.SESSION_COOKIE_NAME, "value": session_cookie(user), "url": production_server.url}
        context.add_cookies([cookie])
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()


def _waiting_job() -> Job:
    job = build_job(job_type="canary", queue="maintenance", actor="canary_maintenance", arguments={"queue": "x"})
    return create_jobs([job])[0]


def _screenshot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
    print(f"screenshot: {SCREENSHOTS / f'{name}.png'}")


def test_staff_who_may_only_view_jobs_see_the_list_without_retry_or_cancel(signed_in):
    # Given a waiting job, and staff given only the permission to view jobs
    job = _waiting_job()
    viewer = UserFactory(is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(content_type__app_label="jobs", codename="view_job"))
    page = signed_in(viewer)

    # When they open the job list
    page.goto("/admin/jobs/job/")
    page.wait_for_selector("#result_list", timeout=WAIT_MS)
    _screenshot(page, "job-list-view-only")

    # Then they see the job, styled as the admin, but no actions and no checkboxes to select it with
    assert page.locator("#result_list tbody tr").count() == 1
    assert str(job.pk)[:8] in page.text_content("#result_list")
    assert page.eval_on_selector("#header", "el => getComputedStyle(el).backgroundColor") == ADMIN_HEADER_BACKGROUND
    assert page.locator("select[name=action]").count() == 0
    assert page.locator("input[name=_selected_action]").count() == 0


def test_a_cancel_from_the_admin_is_listed_in_the_read_only_audit_trail(signed_in):
    # Given a waiting job and an operator who may change jobs
    job = _waiting_job()
    operator = UserFactory(is_staff=True, is_superuser=True, username="operator-ada")
    page = signed_in(operator)

    # When they cancel it from the job list
    page.goto("/admin/jobs/job/")
    page.check(f"input[name=_selected_action][value='{job.pk}']")
    page.select_option("select[name=action]", "cancel_jobs")
    page.click("button[name=index]")
    page.wait_for_selector("text=Cancelled 1 job(s)", timeout=WAIT_MS)
    assert Job.objects.get(pk=job.pk).status == JobStatus.CANCELLED

    # Then the audit trail lists who cancelled what, from where
    page.goto("/admin/jobs/auditevent/")
    page.wait_for_selector("#result_list", timeout=WAIT_MS)
    _screenshot(page, "audit-events")
    row = page.locator("#result_list tbody tr").first
    cells = [text.strip() for text in row.locator("td, th").all_text_contents()]
    assert "cancel" in cells and "admin" in cells and "operator-ada" in cells and str(job.pk) in cells, cells
    assert AuditEvent.objects.count() == 1
    # And it is read-only, even to a superuser: no "add" button, and an event's page has no save button
    assert page.locator(".object-tools a.addlink").count() == 0
    row.locator("th a, td a").first.click()
    page.wait_for_selector("#content", timeout=WAIT_MS)
    assert page.locator("input[name=_save]").count() == 0
