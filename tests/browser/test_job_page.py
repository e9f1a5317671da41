"""The job page in a real browser: its progress bar follows the running job over WebSocket.

It reads like a customer's page: readable status labels, the time left, a cancel button for
the owner and a link to the result. Screenshots land in ``var/screenshots/job-page/``.
"""

from __future__ import annotations

import re

import pytest

from exports.models import Export
from jobs.models import JobStatus
from tests.browser.screenshots import screenshot
from tests.jobs.helpers import reload, start, wait_status

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WAIT_MS = 30_000

# Records every value the bar shows, so the test can see it move (not only where it ends).
RECORD_BAR = """() => {
  window.seenProgress = [];
  const bar = document.getElementById("bar");
  new MutationObserver(() => window.seenProgress.push(Number(bar.dataset.progress)))
    .observe(bar, {attributes: true, attributeFilter: ["data-progress"]});
}"""


def test_progress_bar_moves_to_100_percent(web_server, pools, page, login, user):
    # Given a waiting canary of five steps, and its owner's browser on the job's page
    job = start("canary", user, queue="maintenance", seconds=1.5, steps=5)
    login(page, user)
    page.goto(f"/jobs/{job.id}/")
    page.wait_for_selector("#connection:text('live')", timeout=WAIT_MS)
    assert page.eval_on_selector("#bar", "bar => bar.value") == 0
    page.evaluate(RECORD_BAR)

    # When a worker runs it
    pools("maintenance")

    # Then the bar fills up step by step to 100 % and the page says the job completed
    page.wait_for_function("document.getElementById('bar').value === 100", timeout=WAIT_MS)
    page.wait_for_selector("#status:text-is('Done')", timeout=WAIT_MS)
    assert page.text_content("#text") == "Step 5 of 5 (100%)"
    seen = page.evaluate("window.seenProgress")
    assert seen == sorted(seen)
    assert any(0 < value < 100 for value in seen)


def test_job_page_of_another_users_job_is_not_found(web_server, page, login, user, other_user):
    job = start("canary", user, queue="maintenance")
    login(page, other_user)
    response = page.goto(f"/jobs/{job.id}/")
    assert response is not None and response.status == 404


def test_job_page_sends_a_visitor_who_is_not_signed_in_to_sign_in(web_server, page, user):
    job = start("canary", user, queue="maintenance")
    page.goto(f"/jobs/{job.id}/")
    assert page.url.startswith(f"{web_server.url}/accounts/login/")


def test_owner_sees_readable_status_and_time_left_and_cancels_the_running_job(pools, styled_page, styled_login, user):
    # Given the owner's page of a long job nobody runs yet
    job = start("canary", user, queue="maintenance", seconds=60, steps=60)
    styled_login(styled_page, user)
    styled_page.goto(f"/jobs/{job.id}/")
    styled_page.wait_for_selector("#connection:text('live')", timeout=WAIT_MS)
    # Then it reads "Waiting", says how long the job takes once started, and offers to cancel it
    assert styled_page.text_content("#status") == "Waiting"
    assert styled_page.text_content("#eta").startswith("Takes about ")
    assert styled_page.is_visible("#cancel")

    # When a worker runs it
    pools("maintenance")
    # Then it reads "Running" with the time left, from the job's estimated completion
    styled_page.wait_for_selector("#status:text-is('Running')", timeout=WAIT_MS)
    styled_page.wait_for_selector("#eta:text('left')", timeout=WAIT_MS)
    assert re.fullmatch(
        r"About \d+-\d+ (seconds|minutes) left \(around \d\d:\d\d:\d\d\)", styled_page.text_content("#eta")
    )
    screenshot(styled_page, "job-page", "running")

    # When the owner clicks "Cancel this job"
    styled_page.click("#cancel")
    # Then the job stops, the page reads "Cancelled", and the button is gone
    styled_page.wait_for_selector("#status:text-is('Cancelled')", timeout=WAIT_MS)
    assert wait_status(job, JobStatus.CANCELLED).status == JobStatus.CANCELLED
    styled_page.wait_for_selector("#cancel", state="hidden", timeout=WAIT_MS)
    assert styled_page.text_content("#eta") == ""
    screenshot(styled_page, "job-page", "cancelled")


def test_owner_sees_the_download_of_a_finished_export_on_its_page(pools, styled_page, styled_login, user):
    # Given the owner's page of an export nobody runs yet
    job = start("csv-export", user, query_params={"dataset": "jobs"}, format="csv")
    styled_login(styled_page, user)
    styled_page.goto(f"/jobs/{job.id}/")
    styled_page.wait_for_selector("#connection:text('live')", timeout=WAIT_MS)
    assert styled_page.text_content("#status") == "Waiting" and not styled_page.is_visible("#result")

    # When a worker writes it
    pools("csv-export")

    # Then the page reads "Done", offers no cancel, and links to the file, which downloads
    styled_page.wait_for_selector("#status:text-is('Done')", timeout=WAIT_MS)
    link = styled_page.wait_for_selector("#result-links a", timeout=WAIT_MS)
    export = Export.objects.get(job=reload(job))
    assert link.text_content() == f"Download {export.download_name}"
    assert link.get_attribute("href") == f"/api/exports/{export.id}/download"
    assert not styled_page.is_visible("#cancel")
    download = styled_page.request.get(str(link.get_attribute("href")))
    assert download.status == 200
    assert "id" in download.text().lstrip("\ufeff").splitlines()[0].split(",")  # the jobs dataset's header
    screenshot(styled_page, "job-page", "export-done")


def test_a_visitor_who_may_see_but_does_not_own_a_job_gets_no_cancel_button(web_server, page, login, user, other_user):
    # Given a staff member without the permission to control jobs, looking at a customer's waiting job
    other_user.is_staff = True
    other_user.save(update_fields=["is_staff"])
    job = start("canary", user, queue="maintenance")
    login(page, other_user)
    page.goto(f"/jobs/{job.id}/")
    page.wait_for_selector("#connection:text('live')", timeout=WAIT_MS)
    # Then they see it waiting, but no cancel button
    assert page.text_content("#status") == "Waiting"
    assert not page.is_visible("#cancel")
