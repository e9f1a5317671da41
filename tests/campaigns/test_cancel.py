"""Cancelling a campaign's parent job cancels the campaign: nothing more is sent."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from campaigns.models import Campaign, CampaignStatus, Delivery, DeliveryStatus
from jobs.models import Job, JobStatus
from tests.campaigns.helpers import users
from tests.factories import EmailTemplateFactory
from tests.jobs.helpers import reload, start, wait_status
from tests.workers import wait_for

FAST = {"EMAIL_RATE_LIMIT_PER_MINUTE": "1000000"}


def _campaign_job(staff: Any, n: int, **payload: Any) -> tuple[Job, Campaign]:
    recipients = users(n)
    parent = start(
        "email-batch",
        staff,
        user_ids=[user.pk for user in recipients],
        template_id=EmailTemplateFactory.create().pk,
        **payload,
    )
    return parent, Campaign.objects.get(job=parent)


def test_cancelling_a_scheduled_campaigns_job_cancels_the_campaign(staff, staff_api):
    # Given a campaign scheduled for next week, waiting in the database
    parent, campaign = _campaign_job(staff, 3, schedule_at=timezone.now() + timedelta(days=7))
    # When staff cancel its job through the API
    response = staff_api.post(f"/api/jobs/{parent.id}/cancel")
    # Then the job and the campaign are cancelled, and its deliveries stay pending (never sent)
    assert response.status_code == 202, response.content
    assert reload(parent).status == JobStatus.CANCELLED
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.CANCELLED and campaign.finished_at is not None
    assert set(Delivery.objects.filter(campaign=campaign).values_list("status", flat=True)) == {"pending"}


@pytest.mark.slow
def test_cancelling_a_sending_campaigns_job_stops_its_batches(pools, smtp, smtp_env, staff, staff_api):
    # Given a slow server and a campaign of 6 batches, sending with two threads
    smtp.data_delay_s = 0.05
    pools("email-sender", threads=2, env={**smtp_env, **FAST})
    parent, campaign = _campaign_job(staff, 300)
    wait_for(lambda: len(smtp.received) >= 10, timeout=60, what="the first emails")
    # When staff cancel the parent job through the API while batches run
    response = staff_api.post(f"/api/jobs/{parent.id}/cancel")
    assert response.status_code == 202, response.content
    # Then the parent and every batch end cancelled (or done), and the campaign is cancelled, not sending
    wait_status(parent, JobStatus.CANCELLED, timeout=30)
    wait_for(
        lambda: not Job.objects.filter(parent=parent, status__in=(JobStatus.ACTIVE, JobStatus.QUEUED)).exists(),
        timeout=60,
        what="the batches to stop",
    )
    children = set(Job.objects.filter(parent=parent).values_list("status", flat=True))
    assert JobStatus.CANCELLED in children and children <= {JobStatus.CANCELLED, JobStatus.COMPLETED}
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.CANCELLED
    # And the rest of the audience got nothing: the emails that arrived are the rows marked sent,
    # give or take the one message per connection that was with the server when its batch stopped
    arrived_before = len(smtp.received)
    statuses = dict(Delivery.objects.filter(campaign=campaign).values_list("id", "status"))
    sent = {f"{campaign.pk}/{pk}" for pk, status in statuses.items() if status == DeliveryStatus.SENT}
    received = smtp.per_delivery()
    assert set(received.values()) == {1}
    assert len(set(received) - sent) <= 2
    assert list(statuses.values()).count(DeliveryStatus.PENDING) >= 300 - arrived_before - 2
    assert campaign.sent == len(sent) < 300


def test_cancelling_a_running_campaigns_job_cancels_the_campaign_at_the_request(staff, staff_api):
    # Given a campaign whose parent job is running (a worker holds it)
    parent, campaign = _campaign_job(staff, 3)
    Job.objects.filter(pk=parent.pk).update(status=JobStatus.ACTIVE, started_at=timezone.now())
    Campaign.objects.filter(pk=campaign.pk).update(status=CampaignStatus.SENDING)
    # When staff cancel the job through the API
    response = staff_api.post(f"/api/jobs/{parent.id}/cancel")
    assert response.status_code == 202, response.content
    # Then the job is still running (it stops at its next progress call), asked to stop
    parent = reload(parent)
    assert parent.status == JobStatus.ACTIVE and parent.cancel_requested_at is not None
    # And the campaign already says cancelled, its deliveries unsent
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.CANCELLED and campaign.finished_at is not None
    assert set(Delivery.objects.filter(campaign=campaign).values_list("status", flat=True)) == {"pending"}


@pytest.mark.slow
def test_retrying_a_cancelled_campaigns_job_resumes_the_campaign(pools, smtp, smtp_env, staff, staff_api):
    # Given a campaign cancelled while it sent, its batches stopped
    smtp.data_delay_s = 0.02
    pools("email-sender", threads=2, env={**smtp_env, **FAST})
    parent, campaign = _campaign_job(staff, 200)
    wait_for(lambda: len(smtp.received) >= 5, timeout=60, what="the first emails")
    assert staff_api.post(f"/api/jobs/{parent.id}/cancel").status_code == 202
    wait_status(parent, JobStatus.CANCELLED, timeout=30)
    wait_for(
        lambda: not Job.objects.filter(parent=parent, status__in=(JobStatus.ACTIVE, JobStatus.QUEUED)).exists(),
        timeout=60,
        what="the batches to stop",
    )
    # When staff retry its job
    response = staff_api.post(f"/api/jobs/{parent.id}/retry")
    assert response.status_code == 202, response.content
    # Then the campaign resumes and completes: the recipients left unsent get their email
    wait_status(parent, JobStatus.COMPLETED, timeout=90)
    campaign.refresh_from_db()
    assert (campaign.status, campaign.total) == (CampaignStatus.COMPLETED, 200)
    assert campaign.sent >= 198 and campaign.sent + campaign.failed == 200
    wait_for(lambda: len(smtp.per_delivery()) >= campaign.sent, timeout=10, what="every email")
    # twice at most for the one message per connection that was with the server when its batch was stopped
    received = smtp.per_delivery()
    assert set(received.values()) <= {1, 2} and list(received.values()).count(2) <= 2
