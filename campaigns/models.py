"""Email templates, campaigns and one delivery row per recipient.

A ``Delivery`` is the unit of exactly-once sending. Its states::

    pending ──claim──► sending ──accepted──► sent
       ▲                 │ └──── 5xx ──────► bounced
       │                 │ └──── invalid ──► failed
       └── 4xx / drop ───┘      (attempts left; else failed)

``pending → sending`` is a conditional UPDATE that names the run claiming
the row (``claimed_by``: its fencing token, "<job id>:<attempt>"), so two
batches can never both send it, and it succeeds only while that run still
holds its job; ``sending → sent`` is written right after the SMTP server
accepted the message, by the run whose token the row holds. A ``sending``
row is therefore the one message a crash may leave in doubt. A run that
takes a job over treats the rows ``sending`` under an earlier attempt's token
as in doubt: it sends everything else, then waits for the earlier run to
record them, and sends them again only once that run's worker has stopped
heartbeating for ``EMAIL_IN_DOUBT_GRACE_S`` (``campaigns.deliveries`` states
the rule, ``campaigns.sending`` the loop).
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import Group
from django.db import models
from django.db.models import Count
from django.utils import timezone


class EmailTemplate(models.Model):
    """Subject and bodies as Django templates, rendered with plain data (``campaigns.template_context``)."""

    name = models.CharField(max_length=200, unique=True)
    subject = models.CharField(max_length=255)
    body_text = models.TextField()
    body_html = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class CampaignStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    SCHEDULED = "scheduled", "Scheduled"
    SENDING = "sending", "Sending"
    COMPLETED = "completed", "Completed"
    CANCELLED = "cancelled", "Cancelled"
    #: Its parent job failed for good before the campaign closed.
    FAILED = "failed", "Failed"


#: A campaign in one of these states may still send; its parent job's outcome settles it.
OPEN_CAMPAIGN_STATUSES = (CampaignStatus.DRAFT, CampaignStatus.SCHEDULED, CampaignStatus.SENDING)

#: The key of a day's digest campaign is this prefix and the date.
DIGEST_KEY_PREFIX = "daily-digest:"


class Audience(models.TextChoices):
    SELECTED = "selected", "Selected users"
    GROUP = "group", "A group"
    ALL_ACTIVE = "all-active", "All active users"


class Campaign(models.Model):
    """One blast of a template to an audience; its counts mirror its Delivery rows."""

    name = models.CharField(max_length=200)
    template = models.ForeignKey(EmailTemplate, on_delete=models.PROTECT, related_name="campaigns")
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="owned_campaigns",
    )
    status = models.CharField(max_length=16, choices=CampaignStatus.choices, default=CampaignStatus.DRAFT)
    audience = models.CharField(max_length=16, choices=Audience.choices, default=Audience.SELECTED)
    group = models.ForeignKey(Group, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    selected_users = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="+")
    scheduled_at = models.DateTimeField(null=True, blank=True, help_text="Empty: send when launched.")
    #: A natural key for campaigns made by the system (the daily digest of a day).
    key = models.CharField(max_length=64, null=True, blank=True, unique=True)  # noqa: DJ001
    job = models.ForeignKey(
        "jobs.Job", null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    total = models.PositiveIntegerField(default=0)
    sent = models.PositiveIntegerField(default=0)
    bounced = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.name

    @classmethod
    def mark_cancelled(cls, campaign_id: int) -> bool:
        """Stop a campaign that has not finished; its deliveries not yet sent stay ``pending``, unsent."""
        return bool(
            cls.objects.filter(pk=campaign_id, status__in=OPEN_CAMPAIGN_STATUSES).update(
                status=CampaignStatus.CANCELLED, finished_at=timezone.now()
            )
        )

    @classmethod
    def mark_failed(cls, campaign_id: int) -> bool:
        """Close a campaign whose parent job failed for good; deliveries not yet sent stay ``pending``, unsent."""
        return bool(
            cls.objects.filter(pk=campaign_id, status__in=OPEN_CAMPAIGN_STATUSES).update(
                status=CampaignStatus.FAILED, finished_at=timezone.now()
            )
        )

    @classmethod
    def is_cancelled(cls, campaign_id: int) -> bool:
        return cls.objects.filter(pk=campaign_id, status=CampaignStatus.CANCELLED).exists()

    def refresh_counts(self) -> dict[str, int]:
        """Recount from the Delivery rows and store the counts; returns them."""
        by_status = dict(
            Delivery.objects.filter(campaign_id=self.pk).values_list("status").annotate(n=Count("id")).order_by()
        )
        counts = {
            "total": sum(by_status.values()),
            "sent": by_status.get(DeliveryStatus.SENT, 0),
            "bounced": by_status.get(DeliveryStatus.BOUNCED, 0),
            "failed": by_status.get(DeliveryStatus.FAILED, 0),
        }
        Campaign.objects.filter(pk=self.pk).update(**counts)
        for name, value in counts.items():
            setattr(self, name, value)
        return counts


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    BOUNCED = "bounced", "Bounced"
    FAILED = "failed", "Failed"


#: A delivery in one of these states is never sent again.
FINAL_DELIVERY_STATUSES = (DeliveryStatus.SENT, DeliveryStatus.BOUNCED, DeliveryStatus.FAILED)


class Delivery(models.Model):
    """One recipient of one campaign.

    Every row is written twice as it is sent (``pending -> sending -> sent``),
    so no index holds a column that sending changes: PostgreSQL then
    rewrites the row in place on its page (a HOT update, kept room for by
    the table's fillfactor, migration 0002) and touches no index at all.
    Lookups by campaign use the unique (campaign, user) index; counting by
    status reads the campaign's rows, which happens once per progress
    interval, not once per message.
    """

    # db_index=False: the unique (campaign, user) index serves lookups by campaign.
    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="deliveries", db_index=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    email = models.EmailField(max_length=254)
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    smtp_response = models.TextField(blank=True, default="")
    attempts = models.PositiveSmallIntegerField(default=0)
    #: The run that holds this row in ``sending``: its fencing token "<job id>:<attempt>"
    #: (older rows: the bare job id), or "".
    claimed_by = models.CharField(max_length=64, blank=True, default="")
    #: This recipient's own template context, plain JSON (the daily digest's summary), as ``context.*``.
    context = models.JSONField(default=dict, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["id"]
        verbose_name_plural = "deliveries"
        constraints = [
            models.UniqueConstraint(fields=["campaign", "user"], name="delivery_unique_campaign_user"),
        ]

    def __str__(self) -> str:
        return f"{self.email} ({self.status})"
