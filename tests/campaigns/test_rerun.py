"""Running an email batch again: real workers, a real SMTP server; nobody gets the email twice."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from campaigns.models import Campaign, CampaignStatus, Delivery, DeliveryStatus
from jobs.core.origin import Origin, Via
from jobs.dispatch.rerun import rerun_job
from jobs.dispatch.services import cancel_job
from jobs.models import ACTIVE_STATUSES, Job, JobStatus
from tests.campaigns.helpers import users
from tests.factories import EmailTemplateFactory, UserFactory
from tests.jobs.helpers import reload, start, wait_status, wait_terminal
from tests.workers import wait_for

FAST = {"EMAIL_RATE_LIMIT_PER_MINUTE": "1000000"}


@pytest.mark.slow
def test_a_cancelled_email_batch_run_again_sends_only_to_those_it_had_not_reached(pools, smtp, smtp_env):
    # Given a campaign to six users sent one recipient per batch by one worker thread, through a slow server
    smtp.data_delay_s = 1.0
    pools("email-sender", threads=1, env={**smtp_env, **FAST, "EMAIL_BATCH_SIZE": "1"})
    recipients = users(6)
    operator: Any = UserFactory(is_staff=True, is_superuser=True)
    template: Any = EmailTemplateFactory()
    parent = start("email-batch", operator, user_ids=[user.pk for user in recipients], template_id=template.pk)
    campaign = Campaign.objects.get(job=parent)
    # And the operator cancelled it after two emails had gone out
    wait_for(lambda: len(smtp.addresses()) >= 2, timeout=60, what="two emails to be sent")
    cancel_job(reload(parent), origin=Origin.of_user(operator, Via.ADMIN))
    assert wait_terminal(parent, timeout=60).status == JobStatus.CANCELLED
    wait_for(
        lambda: not Job.objects.filter(parent=parent, status__in=ACTIVE_STATUSES).exists(),
        timeout=60,
        what="the batches to stop",
    )
    reached = set(smtp.addresses())
    assert 2 <= len(reached) < 6
    assert (
        set(Delivery.objects.filter(campaign=campaign, status=DeliveryStatus.SENT).values_list("email", flat=True))
        == reached
    )

    # When the operator runs the cancelled job again
    rerun = rerun_job(reload(parent), Origin.of_user(operator, Via.ADMIN))

    # Then it completes, every recipient has the email exactly once, and the first ones got nothing more
    assert wait_status(rerun, JobStatus.COMPLETED, JobStatus.FAILED, timeout=120).status == JobStatus.COMPLETED
    received = Counter(smtp.addresses())
    assert set(received) == {user.email for user in recipients}
    assert set(received.values()) == {1}
    campaign.refresh_from_db()
    assert (campaign.status, campaign.sent, campaign.job_id) == (CampaignStatus.COMPLETED, 6, rerun.pk)
    assert rerun.rerun_of_id == parent.pk and rerun.result["sent"] == 6
