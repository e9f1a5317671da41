"""Run again from the admin, in a real browser, with real workers (and a real SMTP server for email).

Screenshots land in ``var/screenshots/admin-console/`` (overwritten by each run).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from campaigns.models import Campaign, CampaignStatus
from jobs.models import Job, JobStatus
from tests.browser.screenshots import screenshot
from tests.campaigns.conftest import smtp, smtp_env, smtp_server  # noqa: F401 - the SMTP sink's fixtures
from tests.campaigns.helpers import users
from tests.factories import EmailTemplateFactory, UserFactory
from tests.jobs.helpers import start, wait_status

pytestmark = [pytest.mark.browser, pytest.mark.slow]

WAIT_MS = 30_000
FAST = {"EMAIL_RATE_LIMIT_PER_MINUTE": "1000000"}


def test_operator_runs_a_completed_job_again_from_the_list_and_the_new_job_completes(pools, styled_page, styled_login):
    # Given a completed canary and an operator signed in to the admin
    pools("maintenance")
    original = wait_status(start("canary", None, queue="maintenance", steps=2), JobStatus.COMPLETED)
    operator = UserFactory(is_staff=True, is_superuser=True, username="ops-carla")
    styled_login(styled_page, operator)

    # When they select it in the job list and run the action "Run again"
    styled_page.goto("/admin/jobs/job/?status__exact=completed&type=canary")
    styled_page.check(f"input[name=_selected_action][value='{original.pk}']")
    styled_page.select_option("select[name=action]", "rerun_jobs")
    styled_page.click("button[name=index]")

    # Then the admin says it started one new job, linked to the original, which a worker completes
    message = styled_page.wait_for_selector(".messagelist li.success", timeout=WAIT_MS)
    assert message.text_content().startswith("Started 1 new job(s): ")
    rerun = Job.objects.get(rerun_of=original)
    assert (rerun.owner_id, rerun.created_via, rerun.created_by) == (None, "admin", "ops-carla")
    wait_status(rerun, JobStatus.COMPLETED)
    # And the new job's page (the message's link) names the job it re-ran
    styled_page.click(f".messagelist a:text('{rerun.pk}')")
    styled_page.wait_for_selector(".field-rerun_of_link", timeout=WAIT_MS)
    assert str(original.pk) in styled_page.text_content(".field-rerun_of_link")
    screenshot(styled_page, "admin-console", "rerun-new-job")


def test_operator_runs_an_email_batch_again_from_its_page_and_nobody_gets_it_twice(
    pools,
    styled_page,
    styled_login,
    smtp,  # noqa: F811
    smtp_env,  # noqa: F811
):
    # Given a campaign to three users, sent by a real worker through a real SMTP server
    pools("email-sender", threads=1, env={**smtp_env, **FAST})
    operator: Any = UserFactory(is_staff=True, is_superuser=True)
    recipients = users(3)
    template: Any = EmailTemplateFactory()
    original = start("email-batch", operator, user_ids=[user.pk for user in recipients], template_id=template.pk)
    wait_status(original, JobStatus.COMPLETED, timeout=60)
    assert sorted(smtp.addresses()) == sorted(user.email for user in recipients)

    # When the operator opens the job's admin page and presses "Run again"
    styled_login(styled_page, operator)
    styled_page.goto(f"/admin/jobs/job/{original.pk}/change/")
    screenshot(styled_page, "admin-console", "rerun-button")
    styled_page.click("#rerun-button")

    # Then they are on the new job's page, which says what it re-runs
    styled_page.wait_for_selector(".messagelist li.success", timeout=WAIT_MS)
    rerun = Job.objects.get(rerun_of=original)
    assert styled_page.url.endswith(f"/admin/jobs/job/{rerun.pk}/change/")
    assert str(original.pk) in styled_page.text_content(".field-rerun_of_link")
    # And the re-run completes without emailing anyone who had the campaign already
    wait_status(rerun, JobStatus.COMPLETED, timeout=60)
    received = Counter(smtp.addresses())
    assert received == Counter({user.email: 1 for user in recipients})
    campaign = Campaign.objects.get(job=rerun)
    assert (campaign.status, campaign.sent) == (CampaignStatus.COMPLETED, 3)
    assert rerun.result["sent"] == 3
