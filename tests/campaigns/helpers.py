from __future__ import annotations

from typing import Any

from campaigns.models import Audience, Campaign, CampaignStatus, Delivery, EmailTemplate
from campaigns.services import add_deliveries
from tests.factories import EmailTemplateFactory, UserFactory


def users(n: int, **fields: Any) -> list[Any]:
    return UserFactory.create_batch(n, **fields)


def campaign_for(recipients: list[Any], template: EmailTemplate | None = None) -> Campaign:
    """A launched campaign with a pending delivery per recipient (what the API's plan creates)."""
    chosen: Any = template or EmailTemplateFactory()
    campaign = Campaign.objects.create(
        name="test campaign",
        template=chosen,
        status=CampaignStatus.SCHEDULED,
        audience=Audience.SELECTED,
    )
    add_deliveries(campaign, recipients)
    campaign.refresh_counts()
    return campaign


def delivery_ids(campaign: Campaign) -> list[int]:
    return list(Delivery.objects.filter(campaign=campaign).order_by("id").values_list("id", flat=True))


def statuses(campaign: Campaign) -> dict[str, str]:
    return dict(Delivery.objects.filter(campaign=campaign).values_list("email", "status"))
