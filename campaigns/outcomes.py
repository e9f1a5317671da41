"""What a campaign does when its parent job (``email-batch`` or ``email-digest``) reaches an outcome.

The job platform calls these hooks (``campaigns.job_types`` registers them);
each is idempotent, a conditional update of the Campaign row, because the
platform delivers an outcome at least once:

* ``close_campaign_of_job`` (``on_children_done``): the last batch has
  ended; every delivery gets a final state and the campaign completes. Its
  return value is the parent job's result; an error here fails the parent.
* ``cancel_campaign_at_request`` (``on_cancel_requested``): someone asked to
  cancel the parent; the campaign says ``cancelled`` at once, before the
  running batches notice (they check the campaign between progress reports,
  and what is still ``pending`` stays unsent). Retrying the parent resumes it.
* ``settle_cancelled`` / ``settle_failed`` (``on_cancelled`` /
  ``on_failed``): the parent ended cancelled or failed for good while its
  campaign was still open; the campaign ends ``cancelled`` / ``failed``.
* ``unsettled_campaign_jobs`` / ``unsettled_digest_jobs`` (``unsettled``):
  the parent jobs of campaigns still open, so that the reconciler delivers
  again the outcome of those that finished without their hook.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db.models import Q, QuerySet

from campaigns.exceptions import CampaignNotFound
from campaigns.models import DIGEST_KEY_PREFIX, OPEN_CAMPAIGN_STATUSES, Campaign
from campaigns.services import campaign_percent, finish_campaign, progress_message
from jobs.public import ChildrenSummary, JobOutcome, set_parent_progress

logger = logging.getLogger(__name__)


def campaign_of_job(job: JobOutcome) -> Campaign | None:
    """The campaign a parent job sends: linked to the job, or named in its arguments."""
    return Campaign.objects.filter(Q(job_id=job.job_id) | Q(pk=job.arguments.get("campaign_id"))).first()


def close_campaign_of_job(parent: JobOutcome, summary: ChildrenSummary) -> dict[str, Any]:
    """``on_children_done``: close the campaign; its counts (and the batches') are the parent's result."""
    campaign = campaign_of_job(parent)
    if campaign is None:
        raise CampaignNotFound(f"no campaign for job {parent.job_id}")
    result = finish_campaign(campaign.pk)
    result["batches"] = summary.as_dict()
    set_parent_progress(parent.job_id, campaign_percent(result), progress_message(result), **result)
    return result


def cancel_campaign_at_request(job: JobOutcome) -> None:
    """``on_cancel_requested``: the campaign is ``cancelled`` as soon as its parent is asked to stop.

    ``cancel_job`` has cancelled the waiting batches and flagged the running
    ones (their watchdog stops them); a running batch also checks the
    campaign between progress reports (``sending.send_batch``), so what is
    still ``pending`` stays unsent.
    """
    campaign = campaign_of_job(job)
    if campaign is None:  # a digest cancelled before it made its campaign
        return
    Campaign.mark_cancelled(campaign.pk)
    campaign.refresh_counts()


def settle_cancelled(job: JobOutcome) -> None:
    """``on_cancelled``: a campaign still open when its parent ended cancelled ends ``cancelled``."""
    campaign = campaign_of_job(job)
    if campaign is not None and Campaign.mark_cancelled(campaign.pk):
        campaign.refresh_counts()


def settle_failed(job: JobOutcome) -> None:
    """``on_failed``: a campaign still open when its parent failed for good ends ``failed``."""
    campaign = campaign_of_job(job)
    if campaign is not None and Campaign.mark_failed(campaign.pk):
        logger.warning("Campaign %s failed with its job %s: %s", campaign.pk, job.job_id, job.error)
        campaign.refresh_counts()


def _open_campaign_jobs() -> QuerySet[Campaign]:
    return Campaign.objects.filter(status__in=OPEN_CAMPAIGN_STATUSES, job__isnull=False)


def unsettled_campaign_jobs() -> QuerySet[Any]:
    """``unsettled`` of ``email-batch``: the jobs of open campaigns other than digests."""
    return _open_campaign_jobs().filter(key__isnull=True).values_list("job_id", flat=True)


def unsettled_digest_jobs() -> QuerySet[Any]:
    """``unsettled`` of ``email-digest``: the jobs of open daily digests."""
    return _open_campaign_jobs().filter(key__startswith=DIGEST_KEY_PREFIX).values_list("job_id", flat=True)
