"""The daily digest: one email per active user with something to report, as a campaign.

A day's digest is a campaign keyed ``daily-digest:<date>``, so running the
actor twice on the same day sends nothing twice: the deliveries carry each
user's summary in their context and go through the same batches, rate
limit and exactly-once claims as any campaign.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from campaigns.models import DIGEST_KEY_PREFIX, Audience, Campaign, CampaignStatus, EmailTemplate
from campaigns.services import add_deliveries, reachable_users
from jobs.public import activity_sources, recently_active_users

logger = logging.getLogger(__name__)

DIGEST_TEMPLATE_NAME = "Daily digest"
#: The template's variables are plain data (``campaigns.template_context``): a delivery's summary is
#: ``context.digest``. Migration 0005 turned the earlier default (``user.*``, ``digest.*``) into this one.
DIGEST_SUBJECT = "Your day on Conveyor: {{ context.digest.headline }}"
DIGEST_TEXT = (
    "Hello {{ recipient.first_name|default:recipient.username }},\n\n"
    "In the last day:\n"
    "{% if context.digest.documents %}- documents: {% for status, n in context.digest.documents.items %}"
    "{{ n }} {{ status }}{% if not forloop.last %}, {% endif %}{% endfor %}\n{% endif %}"
    "{% if context.digest.jobs %}- jobs: {% for status, n in context.digest.jobs.items %}"
    "{{ n }} {{ status }}{% if not forloop.last %}, {% endif %}{% endfor %}\n{% endif %}"
    "\n-- Conveyor\n"
)


def digest_template() -> EmailTemplate:
    """The digest's template; created on first use, then edited in the admin like any other."""
    template, _ = EmailTemplate.objects.get_or_create(
        name=DIGEST_TEMPLATE_NAME, defaults={"subject": DIGEST_SUBJECT, "body_text": DIGEST_TEXT}
    )
    return template


def active_users(now: Any = None) -> Any:
    """Reachable users who logged in, or started a job, within ``DIGEST_ACTIVE_DAYS``."""
    since = (now or timezone.now()) - timedelta(days=settings.DIGEST_ACTIVE_DAYS)
    return reachable_users().filter(Q(last_login__gte=since) | Q(id__in=recently_active_users(since)))


#: The activity sources a digest reports (``jobs.public.activity_sources``), in the headline's order,
#: each with its noun; the template shows each under ``context.digest.<source>``.
SECTIONS = {"documents": "document(s)", "jobs": "job(s)"}


def activity_summaries(now: Any = None) -> dict[int, dict[str, Any]]:
    """Per active user, what happened to their documents and jobs in the last day (only non-empty).

    A source that no app registered (the documents app not installed) counts nothing.
    """
    now = now or timezone.now()
    since = now - timedelta(days=1)
    user_ids = list(active_users(now).values_list("id", flat=True))
    sources = activity_sources()
    activity = {name: sources[name](user_ids, since) if name in sources else {} for name in SECTIONS}
    summaries: dict[int, dict[str, Any]] = {}
    for user_id in user_ids:
        sections = {name: activity[name].get(user_id, {}) for name in SECTIONS}
        if not any(sections.values()):
            continue
        headline = ", ".join(f"{sum(counts.values())} {SECTIONS[name]}" for name, counts in sections.items() if counts)
        summaries[user_id] = {**sections, "headline": headline}
    return summaries


def prepare_daily_digest(day: date | None = None) -> Campaign:
    """The day's digest campaign with one delivery per user with something to report (idempotent)."""
    now = timezone.now()
    day = day or now.date()
    key = f"{DIGEST_KEY_PREFIX}{day.isoformat()}"
    existing = Campaign.objects.filter(key=key).first()
    if existing is not None:
        return existing
    summaries = activity_summaries(now)
    try:
        with transaction.atomic():
            campaign = Campaign.objects.create(
                name=f"Daily digest {day.isoformat()}",
                key=key,
                template=digest_template(),
                status=CampaignStatus.SCHEDULED,
                audience=Audience.SELECTED,
            )
            users = reachable_users().filter(id__in=list(summaries)).only("id", "email")
            add_deliveries(campaign, users, {uid: {"digest": s} for uid, s in summaries.items()})
            campaign.refresh_counts()
    except IntegrityError:
        # Another run created the day's digest first.
        return Campaign.objects.get(key=key)
    logger.info("Daily digest %s: %d recipient(s)", day, len(summaries))
    return campaign
