"""The campaign job types: ``email-batch`` (staff), ``email-digest`` (the scheduler's) and their batches.

Each type declares its queue and actor here, once; ``campaigns.tasks``
declares the actors from these types. Both parents close, cancel and
settle their campaign through the hooks of ``campaigns.outcomes``.
"""

from __future__ import annotations

from typing import Any

from django.urls import reverse
from rest_framework import serializers
from rest_framework.exceptions import NotFound, ValidationError

from campaigns.models import DIGEST_KEY_PREFIX, Campaign, EmailTemplate
from campaigns.outcomes import (
    cancel_campaign_at_request,
    close_campaign_of_job,
    settle_cancelled,
    settle_failed,
    unsettled_campaign_jobs,
    unsettled_digest_jobs,
)
from campaigns.services import (
    EMAIL_BATCH,
    EMAIL_BATCH_PART,
    EMAIL_DIGEST,
    create_campaign_for_users,
    expected_duration_s,
    link_job,
    reachable_users,
)
from jobs.public import JobOutcome, JobPlan, JobType, ResultLink, register_job_type

EMAIL_QUEUE = "email-sender"
MAX_RECIPIENTS = 100_000


class EmailBatchSerializer(serializers.Serializer):  # type: ignore[type-arg]
    user_ids = serializers.ListField(
        child=serializers.IntegerField(min_value=1), allow_empty=False, max_length=MAX_RECIPIENTS
    )
    template_id = serializers.IntegerField(min_value=1)
    schedule_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
    name = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)


def plan_email_batch(user: Any, data: dict[str, Any]) -> JobPlan:
    template = EmailTemplate.objects.filter(pk=data["template_id"]).first()
    if template is None:
        raise NotFound(f"no email template {data['template_id']}")
    wanted = set(data["user_ids"])
    reachable = set(reachable_users().filter(id__in=wanted).values_list("id", flat=True))
    if not reachable:
        raise ValidationError({"user_ids": ["none of these users is active with an email address"]})
    campaign = create_campaign_for_users(
        owner=user,
        template=template,
        user_ids=sorted(reachable),
        schedule_at=data["schedule_at"],
        name=data["name"],
    )
    return JobPlan(
        arguments={"campaign_id": campaign.pk},
        schedule_at=data["schedule_at"],
        estimated_duration_s=expected_duration_s(campaign.total),
        on_created=lambda job: link_job(campaign, job),
    )


def _campaign_of(outcome: JobOutcome) -> Campaign | None:
    """The campaign a parent job sent: in its arguments (email-batch) or its progress data (both, once running)."""
    campaign_id = outcome.arguments.get("campaign_id") or outcome.data.get("campaign_id")
    campaign = Campaign.objects.filter(pk=campaign_id).first() if campaign_id else None
    return campaign or Campaign.objects.filter(job_id=outcome.job_id).first()


def campaign_result_links(outcome: JobOutcome) -> list[ResultLink]:
    """The campaign's page in the admin (its deliveries and counts): these types are staff's."""
    campaign = _campaign_of(outcome)
    if campaign is None:
        return []
    return [ResultLink(f"Campaign {campaign.name}", reverse("admin:campaigns_campaign_change", args=[campaign.pk]))]


EMAIL_BATCH_TYPE = register_job_type(
    JobType(
        name=EMAIL_BATCH,
        queue=EMAIL_QUEUE,
        actor="send_campaign",
        serializer=EmailBatchSerializer,
        description=(
            "Emails a template to users as a campaign: batches of 50 at the provider's rate limit, "
            "each recipient tracked and sent once."
        ),
        default_duration_s=60.0,
        staff_only=True,
        permission="campaigns.add_campaign",
        # Not deferrable: a campaign has a send time its recipients expect; staff are never refused
        # anyway, this holds if the type is ever opened to customers.
        deferrable=False,
        plan=plan_email_batch,
        on_children_done=close_campaign_of_job,
        on_cancel_requested=cancel_campaign_at_request,
        on_failed=settle_failed,
        on_cancelled=settle_cancelled,
        unsettled=unsettled_campaign_jobs,
        # Run again (no ``rerun`` plan): the same campaign. start_sending adds deliveries only for
        # recipients who have none and batches only the ones still pending, so nobody who was sent
        # (or bounced, or failed for good) is emailed again; those still pending are sent.
        result_links=campaign_result_links,
    )
)

#: A campaign's batch, the child of both parents: internal (no serializer), started by fan-out only.
EMAIL_BATCH_PART_TYPE = register_job_type(
    JobType(
        name=EMAIL_BATCH_PART,
        queue=EMAIL_QUEUE,
        actor="send_email_batch",
        serializer=None,
        description="One batch of a campaign: up to 50 recipients over one SMTP connection.",
    )
)


class DigestSerializer(serializers.Serializer):  # type: ignore[type-arg]
    day = serializers.DateField(required=False, allow_null=True, default=None)


def plan_digest(user: Any, data: dict[str, Any]) -> JobPlan:
    day = data.get("day")
    return JobPlan(arguments={"day": day.isoformat() if day else ""})


def plan_digest_rerun(original: JobOutcome) -> JobPlan:
    """Run again: the digest of the same day (an empty day means "today" when the original ran, not now)."""
    day = original.arguments.get("day") or ""
    campaign = _campaign_of(original)
    key = (campaign.key if campaign is not None else None) or ""
    if not day and key.startswith(DIGEST_KEY_PREFIX):
        day = key.removeprefix(DIGEST_KEY_PREFIX)
    return JobPlan(arguments={"day": day})


EMAIL_DIGEST_TYPE = register_job_type(
    JobType(
        name=EMAIL_DIGEST,
        queue=EMAIL_QUEUE,
        actor="send_daily_digest",
        serializer=DigestSerializer,
        description="Emails each active user a summary of their last day, if they have one (08:00 UTC).",
        default_duration_s=60.0,
        staff_only=True,
        permission="campaigns.add_campaign",
        # Not deferrable: a digest is about one day and is late the next.
        deferrable=False,
        plan=plan_digest,
        on_children_done=close_campaign_of_job,
        on_cancel_requested=cancel_campaign_at_request,
        on_failed=settle_failed,
        on_cancelled=settle_cancelled,
        unsettled=unsettled_digest_jobs,
        # Run again: the same day's digest campaign (one per day): only its pending deliveries are sent.
        rerun=plan_digest_rerun,
        result_links=campaign_result_links,
    )
)
