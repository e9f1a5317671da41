"""A campaign settles through its parent job's outcome hooks: failed, cancelled, and again from the reconciler."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from campaigns.models import Campaign, CampaignStatus
from jobs.dispatch.outcomes import deliver_outcome
from jobs.dispatch.registry import get_job_type
from jobs.models import Job, JobStatus
from tests.campaigns.helpers import users
from tests.factories import EmailTemplateFactory
from tests.jobs.helpers import start


def _sending_campaign(staff: Any) -> tuple[Job, Campaign]:
    recipients = users(3)
    parent = start(
        "email-batch", staff, user_ids=[user.pk for user in recipients], template_id=EmailTemplateFactory.create().pk
    )
    Campaign.objects.filter(job=parent).update(status=CampaignStatus.SENDING, started_at=timezone.now())
    return parent, Campaign.objects.get(job=parent)


def _end(job: Job, status: str, error: str = "") -> None:
    Job.objects.filter(pk=job.pk).update(status=status, finished_at=timezone.now(), error_message=error)


def test_a_failed_parent_job_settles_its_sending_campaign_as_failed(staff):
    # Given a campaign sending
    parent, campaign = _sending_campaign(staff)
    # When its parent job fails for good and the platform delivers the outcome
    _end(parent, JobStatus.FAILED, "RuntimeError: boom")
    assert deliver_outcome(str(parent.pk))
    # Then the campaign is failed and closed, its deliveries not sent
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.FAILED and campaign.finished_at is not None
    assert (campaign.total, campaign.sent) == (3, 0)


def test_delivering_a_failure_again_changes_nothing(staff):
    # Given a campaign already settled as failed by its job's hook
    parent, campaign = _sending_campaign(staff)
    _end(parent, JobStatus.FAILED, "RuntimeError: boom")
    deliver_outcome(str(parent.pk))
    finished_at = Campaign.objects.get(pk=campaign.pk).finished_at
    # When the outcome is delivered a second time
    assert deliver_outcome(str(parent.pk))
    # Then the campaign is as it was
    campaign.refresh_from_db()
    assert (campaign.status, campaign.finished_at) == (CampaignStatus.FAILED, finished_at)


def test_a_failed_parent_job_leaves_a_completed_campaign_completed(staff):
    parent, campaign = _sending_campaign(staff)
    Campaign.objects.filter(pk=campaign.pk).update(status=CampaignStatus.COMPLETED)
    _end(parent, JobStatus.FAILED, "RuntimeError: after the close")
    deliver_outcome(str(parent.pk))
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.COMPLETED


def test_a_cancelled_parent_job_settles_its_sending_campaign_as_cancelled(staff):
    parent, campaign = _sending_campaign(staff)
    _end(parent, JobStatus.CANCELLED)
    assert deliver_outcome(str(parent.pk))
    campaign.refresh_from_db()
    assert campaign.status == CampaignStatus.CANCELLED and campaign.finished_at is not None


def test_open_campaigns_name_their_jobs_as_unsettled_until_settled(staff):
    # Given a sending campaign, and the email-batch and email-digest types
    parent, campaign = _sending_campaign(staff)
    batch, digest = get_job_type("email-batch"), get_job_type("email-digest")
    assert batch.unsettled is not None and digest.unsettled is not None
    # Then its job waits for an outcome, as an email-batch (not a digest)
    assert parent.pk in set(batch.unsettled()) and parent.pk not in set(digest.unsettled())
    # When its job's failure is delivered
    _end(parent, JobStatus.FAILED, "RuntimeError: boom")
    deliver_outcome(str(parent.pk))
    # Then nothing waits any more
    assert parent.pk not in set(batch.unsettled())
