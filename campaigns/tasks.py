"""The campaign actors: thin, declared from their job types (``campaigns.job_types``)."""

from __future__ import annotations

from datetime import date
from typing import Any

from campaigns import digest, sending, services
from campaigns.job_types import EMAIL_BATCH_PART_TYPE, EMAIL_BATCH_TYPE, EMAIL_DIGEST_TYPE
from jobs.public import (
    AwaitChildren,
    ChildJob,
    current_fence,
    current_job,
    fan_out,
    job_actor,
    progress,
    report_parent_progress,
)


def _fan_out_batches(plan: services.SendingPlan) -> AwaitChildren | dict[str, Any]:
    if not plan.batches:
        return services.finish_campaign(plan.campaign_id)
    counts = plan.counts
    data: dict[str, Any] = dict(counts)
    progress(services.campaign_percent(counts), services.progress_message(counts), **data)
    children = [
        ChildJob.of(EMAIL_BATCH_PART_TYPE, {"campaign_id": plan.campaign_id, "delivery_ids": batch})
        for batch in plan.batches
    ]
    return fan_out(children, unit="batches", data={"campaign_id": plan.campaign_id}, own_progress=True)


@job_actor(EMAIL_BATCH_TYPE)
def send_campaign(campaign_id: int) -> AwaitChildren | dict[str, Any]:
    """Parent of a campaign: deliveries, then one child job per batch of 50."""
    running = current_job()
    plan = services.start_sending(campaign_id, job_id=running.job_id if running else None)
    return _fan_out_batches(plan)


def _report(counts: dict[str, int], done: int, total: int) -> None:
    data: dict[str, Any] = dict(counts)
    progress(100 * done / total if total else 100, f"{done} of {total} recipients", **data)
    report_parent_progress(services.campaign_percent(counts), services.progress_message(counts), **counts)


@job_actor(EMAIL_BATCH_PART_TYPE)
def send_email_batch(campaign_id: int, delivery_ids: list[int]) -> dict[str, int]:
    """Child of a campaign: one SMTP connection for up to 50 recipients."""
    fence = current_fence()  # the run's token, "<job id>:<attempt>": its claims say which run holds them
    token = str(fence) if fence is not None else "local"
    return sending.send_batch(campaign_id, delivery_ids, token=token, report=_report).as_dict()


@job_actor(EMAIL_DIGEST_TYPE)
def send_daily_digest(day: str = "") -> AwaitChildren | dict[str, Any]:
    """The daily digest (the scheduler sends it at 08:00 UTC): a campaign of the day's summaries."""
    campaign = digest.prepare_daily_digest(date.fromisoformat(day) if day else None)
    running = current_job()
    plan = services.start_sending(campaign.pk, job_id=running.job_id if running else None)
    return _fan_out_batches(plan)
