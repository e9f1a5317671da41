"""The campaign actors: thin, on the ``email-sender`` queue."""

from __future__ import annotations

from datetime import date
from typing import Any

import dramatiq

from campaigns import digest, sending, services
from jobs.core.context import current_job
from jobs.worker.fanout import AwaitChildren, ChildJob, fan_out, report_parent_progress
from jobs.worker.progress import progress


def _fan_out_batches(plan: services.SendingPlan) -> AwaitChildren | dict[str, Any]:
    if not plan.batches:
        return services.finish_campaign(plan.campaign_id)
    counts = plan.counts
    data: dict[str, Any] = dict(counts)
    progress(services.campaign_percent(counts), services.progress_message(counts), **data)
    children = [
        ChildJob(
            actor=services.BATCH_ACTOR,
            arguments={"campaign_id": plan.campaign_id, "delivery_ids": batch},
            job_type=services.BATCH_JOB_TYPE,
        )
        for batch in plan.batches
    ]
    return fan_out(children, unit="batches", data={"campaign_id": plan.campaign_id}, own_progress=True)


def send_campaign(campaign_id: int) -> AwaitChildren | dict[str, Any]:
    """Parent of a campaign: deliveries, then one child job per batch of 50."""
    running = current_job()
    plan = services.start_sending(campaign_id, job_id=running.job_id if running else None)
    return _fan_out_batches(plan)


def _report(counts: dict[str, int], done: int, total: int) -> None:
    data: dict[str, Any] = dict(counts)
    progress(100 * done / total if total else 100, f"{done} of {total} recipients", **data)
    report_parent_progress(services.campaign_percent(counts), services.progress_message(counts), **counts)


def send_email_batch(campaign_id: int, delivery_ids: list[int]) -> dict[str, int]:
    """Child of a campaign: one SMTP connection for up to 50 recipients."""
    running = current_job()
    token = running.job_id if running else "local"
    return sending.send_batch(campaign_id, delivery_ids, token=token, report=_report).as_dict()


def send_daily_digest(day: str = "") -> AwaitChildren | dict[str, Any]:
    """The daily digest (the scheduler sends it at 08:00 UTC): a campaign of the day's summaries."""
    campaign = digest.prepare_daily_digest(date.fromisoformat(day) if day else None)
    running = current_job()
    plan = services.start_sending(campaign.pk, job_id=running.job_id if running else None)
    return _fan_out_batches(plan)


send_campaign_actor = dramatiq.actor(actor_name=services.CAMPAIGN_ACTOR, queue_name=services.EMAIL_QUEUE)(send_campaign)
send_email_batch_actor = dramatiq.actor(actor_name=services.BATCH_ACTOR, queue_name=services.EMAIL_QUEUE)(
    send_email_batch
)
send_daily_digest_actor = dramatiq.actor(actor_name="send_daily_digest", queue_name=services.EMAIL_QUEUE)(
    send_daily_digest
)
