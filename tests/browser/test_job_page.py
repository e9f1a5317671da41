"""The job page in a real browser: its progress bar follows the running job over WebSocket."""

from __future__ import annotations

import pytest

from tests.jobs.helpers import start

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
    page.wait_for_selector("#status:text('completed')", timeout=WAIT_MS)
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
