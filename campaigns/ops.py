"""What campaigns add to the job platform's alerts and weekly report (``jobs`` never imports campaigns).

Registered from ``CampaignsConfig.ready``: the "Slow email sending" alert
rule (``ALERT_EMAIL_RATE_THRESHOLD`` emails a minute, held for
``ALERT_EMAIL_RATE_FOR_S``), the report's delivery-rate column, and the
"emails" counter: the console and the weekly report count emails sent,
bounced and failed, not the email jobs that sent them.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Count, Q, Sum
from django.utils import timezone

from campaigns.job_types import EMAIL_BATCH_TYPE
from campaigns.models import Campaign, CampaignStatus, Delivery, DeliveryStatus
from jobs.public import AlertRule, Breach, register_alert_rule, register_report_column, register_work_counter

RATE_WINDOW = timedelta(minutes=1)


def emails_sent_per_minute() -> float | None:
    """Emails sent in the last minute, while a campaign with recipients still waiting is sending; else None."""
    sending = list(
        Campaign.objects.filter(
            status=CampaignStatus.SENDING,
            deliveries__status__in=(DeliveryStatus.PENDING, DeliveryStatus.SENDING),
        )
        .values_list("pk", flat=True)
        .distinct()
    )
    if not sending:
        return None
    since = timezone.now() - RATE_WINDOW
    sent = Delivery.objects.filter(campaign_id__in=sending, status=DeliveryStatus.SENT, sent_at__gte=since).count()
    return sent / (RATE_WINDOW.total_seconds() / 60)


def slow_email_sending(rule: AlertRule, now: datetime) -> list[Breach] | None:
    """Breached while a campaign sends slower than the threshold (emails a minute); quiet when none sends."""
    rate = emails_sent_per_minute()
    if rate is None or rate >= rule.threshold:
        return []
    return [Breach("", rate, f"a campaign is sending at {rate:g} emails/min (threshold {rule.threshold:g}/min)")]


def delivery_rate(start: datetime, end: datetime) -> str | None:
    """Sent among the recipients of campaigns that finished in the period (bounces and failures are not)."""
    totals = Campaign.objects.filter(finished_at__gte=start, finished_at__lt=end).aggregate(
        sent=Sum("sent"), bounced=Sum("bounced"), failed=Sum("failed")
    )
    sent, bounced, failed = (totals[name] or 0 for name in ("sent", "bounced", "failed"))
    if not sent + bounced + failed:
        return None
    return f"{sent / (sent + bounced + failed) * 100:.1f} %"


def emails_by_outcome(start: datetime, end: datetime) -> dict[str, int]:
    """Deliveries that ended in ``[start, end)``, by outcome: sent, bounced, failed.

    A final delivery is never written again, so its last write (``updated_at``)
    is when it ended. Only campaigns that were open in the period are read
    (through the (campaign, user) index), not the whole table.
    """
    campaigns = Campaign.objects.filter(created_at__lt=end).filter(
        Q(finished_at__isnull=True) | Q(finished_at__gte=start)
    )
    counts = Delivery.objects.filter(
        campaign__in=campaigns,
        status__in=(DeliveryStatus.SENT, DeliveryStatus.BOUNCED, DeliveryStatus.FAILED),
        updated_at__gte=start,
        updated_at__lt=end,
    ).aggregate(
        sent=Count("id", filter=Q(status=DeliveryStatus.SENT)),
        bounced=Count("id", filter=Q(status=DeliveryStatus.BOUNCED)),
        failed=Count("id", filter=Q(status=DeliveryStatus.FAILED)),
    )
    return {outcome: counts[outcome] or 0 for outcome in ("sent", "bounced", "failed")}


def register() -> None:
    register_alert_rule(AlertRule("email_rate", "Slow email sending", slow_email_sending))
    register_report_column("delivery", EMAIL_BATCH_TYPE.queue, delivery_rate)
    register_work_counter("emails", EMAIL_BATCH_TYPE.queue, emails_by_outcome)
