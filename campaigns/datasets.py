"""The deliveries dataset: a campaign owner's delivery results, one row per recipient (registered from ``ready()``)."""

from __future__ import annotations

from campaigns.models import Campaign, Delivery, DeliveryStatus
from jobs.public import DATETIME, INTEGER, TEXT, Column, Dataset, Filter, choice, quoted_table, register_dataset


def _deliveries_from() -> str:
    return f"{quoted_table(Delivery)} dl JOIN {quoted_table(Campaign)} c ON c.id = dl.campaign_id"


DELIVERIES = register_dataset(
    Dataset(
        name="deliveries",
        description="The delivery results of your campaigns: one row per recipient.",
        from_sql=_deliveries_from,
        fields={
            "id": Column("dl.id"),
            "campaign_id": Column("c.id"),
            "campaign": Column("c.name"),
            "email": Column("dl.email"),
            "status": Column("dl.status"),
            "attempts": Column("dl.attempts"),
            "sent_at": Column("dl.sent_at", kind="datetime"),
            "smtp_response": Column("dl.smtp_response"),
        },
        filters={
            "campaign_id": Filter("c.id", "in", INTEGER),
            "status": Filter("dl.status", "in", choice([status.value for status in DeliveryStatus])),
            "email_contains": Filter("dl.email", "icontains", TEXT),
            "sent_after": Filter("dl.sent_at", "gte", DATETIME),
            "sent_before": Filter("dl.sent_at", "lt", DATETIME),
        },
        orderings={"id": "dl.id", "sent_at": "dl.sent_at", "email": "dl.email", "status": "dl.status"},
        default_ordering="id",
        tiebreak="dl.id",
        owner_sql="c.owner_id",
    )
)
