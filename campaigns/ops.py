"""What campaigns tell the job platform's alerts and weekly report (``jobs`` never imports campaigns).

Registered from ``CampaignsConfig.ready``.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Sum
from django.utils import timezone

from campaigns.models import Campaign, CampaignStatus, Delivery, DeliveryStatus
from campaigns.services import EMAIL_QUEUE
from jobs.ops.alerts.inputs import EMAIL_SENT_PER_MINUTE, register_rule_input
from jobs.ops.reports import register_report_column

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


def delivery_rate(start: datetime, end: datetime) -> str | None:
    """Sent among the recipients of campaigns that finished in the period (bounces and failures are not)."""
    totals = Campaign.objects.filter(finished_at__gte=start, finished_at__lt=end).aggregate(
        sent=Sum("sent"), bounced=Sum("bounced"), failed=Sum("failed")
    )
    sent, bounced, failed = (totals[name] or 0 for name in ("sent", "bounced", "failed"))
    if not sent + bounced + failed:
        return None
    return f"{sent / (sent + bounced + failed) * 100:.1f} %"


def register() -> None:
    register_rule_input(EMAIL_SENT_PER_MINUTE, emails_sent_per_minute)
    register_report_column("delivery", EMAIL_QUEUE, delivery_rate)
