"""email-batch end to end: real worker processes, real Redis and PostgreSQL, a real SMTP server."""

from __future__ import annotations

from typing import Any

import pytest

from campaigns.models import Campaign, Delivery, DeliveryStatus
from jobs.models import Job, JobStatus
from tests.campaigns.helpers import users
from tests.factories import EmailTemplateFactory, UserFactory
from tests.jobs.helpers import start, wait_status
from tests.workers import wait_for

FAST = {"EMAIL_RATE_LIMIT_PER_MINUTE": "1000000"}


def _blast(n: int) -> tuple[Job, Campaign]:
    recipients = users(n)
    template: Any = EmailTemplateFactory()
    parent = start(
        "email-batch",
        UserFactory(is_staff=True),
        user_ids=[user.pk for user in recipients],
        template_id=template.pk,
    )
    return parent, Campaign.objects.get(job=parent)


def _all_sent(campaign: Campaign) -> bool:
    return set(Delivery.objects.filter(campaign=campaign).values_list("status", flat=True)) == {DeliveryStatus.SENT}


@pytest.mark.slow
def test_campaign_fans_out_in_batches_of_50_and_reports_its_counts(pools, smtp, smtp_env):
    # Given a worker pool and a campaign to 120 users
    pools("email-sender", threads=5, env={**smtp_env, **FAST})
    parent, campaign = _blast(120)
    # When it has run
    wait_status(parent, JobStatus.COMPLETED, timeout=60)
    # Then it ran as three children of 50, 50 and 20 recipients
    sizes = sorted(len(child.arguments["delivery_ids"]) for child in Job.objects.filter(parent=parent))
    assert sizes == [20, 50, 50]
    # And the parent's progress and result are the campaign's
    assert parent.progress_data["message"] == "Sending... 120 of 120 emails sent"
    assert {k: parent.progress_data[k] for k in ("sent", "bounced", "failed", "total")} == {
        "sent": 120,
        "bounced": 0,
        "failed": 0,
        "total": 120,
    }
    assert parent.result["sent"] == 120
    campaign.refresh_from_db()
    assert (campaign.status, campaign.sent, campaign.total) == ("completed", 120, 120)


@pytest.mark.slow
def test_every_delivery_status_through_the_job(pools, smtp, smtp_env):
    # Given recipients the server treats differently
    ok, unknown, greylisted, content = users(4)
    smtp.rcpt_replies[unknown.email] = "550 5.1.1 no such user"
    smtp.rcpt_temporary[greylisted.email] = 1
    smtp.data_replies[content.email] = "554 5.6.0 content rejected"
    pools("email-sender", threads=2, env={**smtp_env, **FAST})
    parent = start(
        "email-batch",
        UserFactory(is_staff=True),
        user_ids=[u.pk for u in (ok, unknown, greylisted, content)],
        template_id=EmailTemplateFactory().pk,
    )
    wait_status(parent, JobStatus.COMPLETED, timeout=60)
    outcome = dict(Delivery.objects.values_list("email", "status"))
    assert outcome == {ok.email: "sent", unknown.email: "bounced", greylisted.email: "sent", content.email: "failed"}
    assert parent.result == {**parent.result, "sent": 2, "bounced": 1, "failed": 1, "total": 4}
    # And the 4xx retry did not use up a job retry
    [child] = Job.objects.filter(parent=parent)
    assert child.attempts == 1


@pytest.mark.slow
def test_hundreds_of_recipients_each_get_exactly_one_email(pools, smtp, smtp_env):
    pools("email-sender", threads=5, env={**smtp_env, **FAST})
    parent, campaign = _blast(300)
    wait_status(parent, JobStatus.COMPLETED, timeout=90)
    received = smtp.per_delivery()
    assert len(received) == 300
    assert set(received.values()) == {1}
    assert _all_sent(campaign)


@pytest.mark.slow
def test_rate_limit_holds_in_every_window_across_two_worker_processes(pools, smtp, smtp_env):
    # Given a limit of 10 per 1-second window, small batches, and two worker processes
    env = {
        **smtp_env,
        "EMAIL_RATE_LIMIT_PER_MINUTE": "10",
        "EMAIL_RATE_LIMIT_WINDOW_S": "1",
        "EMAIL_RATE_LIMIT_GUARD_S": "0.2",
        "EMAIL_RATE_LIMIT_MAX_WAIT_S": "0.05",
        "EMAIL_BATCH_SIZE": "5",
    }
    pools("email-sender", processes=2, threads=5, env=env)
    # When a campaign to 40 users runs
    parent, campaign = _blast(40)
    wait_status(parent, JobStatus.COMPLETED, timeout=90)
    # Then no 1-second window at the server held more than 10 emails, and all 40 arrived once
    assert smtp.max_in_any_window(1.0) <= 10
    assert sorted(smtp.per_delivery().values()) == [1] * 40
    # And waiting for the limiter used up no job retries
    assert set(Job.objects.filter(parent=parent).values_list("attempts", flat=True)) == {1}


@pytest.mark.slow
def test_smtp_connections_stay_within_the_shared_limit(pools, smtp, smtp_env):
    smtp.data_delay_s = 0.02
    env = {**smtp_env, **FAST, "EMAIL_MAX_CONNECTIONS": "2", "EMAIL_BATCH_SIZE": "5"}
    pools("email-sender", processes=2, threads=3, env=env)
    parent, campaign = _blast(40)
    wait_status(parent, JobStatus.COMPLETED, timeout=90)
    assert _all_sent(campaign)
    assert smtp.max_open_connections <= 2


@pytest.mark.slow
@pytest.mark.fault
def test_worker_killed_mid_batch_loses_no_recipient_and_duplicates_at_most_the_one_in_flight(pools, smtp, smtp_env):
    # Given a slow server and one batch of 30 on a single worker thread
    smtp.data_delay_s = 0.2
    pool = pools("email-sender", threads=1, env={**smtp_env, **FAST})
    parent, campaign = _blast(30)
    wait_for(lambda: len(smtp.received) >= 5, timeout=30, what="the batch to be under way")
    # When the worker process is killed mid-batch, and the pool comes back
    pool.kill_worker()
    pool.wait(timeout=30)
    pools("email-sender", threads=1, env={**smtp_env, **FAST})
    # Then the batch is redelivered and finishes
    wait_status(parent, JobStatus.COMPLETED, timeout=90)
    assert _all_sent(campaign)
    received = smtp.per_delivery()
    # No loss: every recipient's email reached the server
    assert len(received) == 30
    # No duplicate beyond the documented window: the one message in flight on the one connection
    assert sum(n - 1 for n in received.values()) <= 1
    [child] = Job.objects.filter(parent=parent)
    assert child.attempts == 2
