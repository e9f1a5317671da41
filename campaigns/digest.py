"""The daily digest: one email per active user with something to report, as a campaign.

A day's digest is a campaign keyed ``daily-digest:<date>``, so running the
actor twice on the same day sends nothing twice: the deliveries carry each
user's summary in their context and go through the same batches, rate
limit and exactly-once claims as any campaign.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import date, timedelta
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.utils import timezone

from campaigns.models import Audience, Campaign, CampaignStatus, EmailTemplate
from campaigns.services import add_deliveries, reachable_users
from jobs.models import Job

logger = logging.getLogger(__name__)

DIGEST_TEMPLATE_NAME = "Daily digest"
DIGEST_SUBJECT = "Your day on Conveyor: {{ digest.headline }}"
DIGEST_TEXT = (
    "Hello {{ user.get_short_name|default:user.get_username }},\n\n"
    "In the last day:\n"
    "{% if digest.documents %}- documents: {% for status, n in digest.documents.items %}"
    "{{ n }} {{ status }}{% if not forloop.last %}, {% endif %}{% endfor %}\n{% endif %}"
    "{% if digest.jobs %}- jobs: {% for status, n in digest.jobs.items %}"
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
    recent_owners = Job.objects.filter(created_at__gte=since, owner__isnull=False).values("owner_id")
    return reachable_users().filter(Q(last_login__gte=since) | Q(id__in=recent_owners))


def _counts_by_owner(queryset: Any, status_field: str) -> dict[int, dict[str, int]]:
    summary: dict[int, dict[str, int]] = defaultdict(dict)
    rows = queryset.values_list("owner_id", status_field).annotate(n=Count("pk")).order_by()
    for owner_id, status, n in rows:
        summary[owner_id][str(status)] = n
    return summary


def _document_activity(since: Any, user_ids: list[int]) -> dict[int, dict[str, int]]:
    """Documents created in the period, by status, when the documents app has its model."""
    try:
        document = apps.get_model("documents", "Document")
    except LookupError:
        return {}
    names = {f.name for f in document._meta.get_fields()}
    if not {"owner", "created_at"} <= names:
        return {}
    status_field = "status" if "status" in names else "owner_id"
    rows = document.objects.filter(owner_id__in=user_ids, created_at__gte=since)
    if status_field == "owner_id":
        return {owner: {"uploaded": n} for owner, n in _flat_counts(rows).items()}
    return _counts_by_owner(rows, status_field)


def _flat_counts(queryset: Any) -> dict[int, int]:
    return dict(queryset.values_list("owner_id").annotate(n=Count("pk")).order_by())


def activity_summaries(now: Any = None) -> dict[int, dict[str, Any]]:
    """Per active user, what happened to their documents and jobs in the last day (only non-empty)."""
    now = now or timezone.now()
    since = now - timedelta(days=1)
    user_ids = list(active_users(now).values_list("id", flat=True))
    jobs = _counts_by_owner(
        Job.objects.filter(owner_id__in=user_ids, parent__isnull=True, created_at__gte=since), "status"
    )
    documents = _document_activity(since, user_ids)
    summaries: dict[int, dict[str, Any]] = {}
    for user_id in user_ids:
        user_jobs, user_docs = jobs.get(user_id, {}), documents.get(user_id, {})
        if not user_jobs and not user_docs:
            continue
        parts = []
        if user_docs:
            parts.append(f"{sum(user_docs.values())} document(s)")
        if user_jobs:
            parts.append(f"{sum(user_jobs.values())} job(s)")
        summaries[user_id] = {"jobs": user_jobs, "documents": user_docs, "headline": ", ".join(parts)}
    return summaries


def prepare_daily_digest(day: date | None = None) -> Campaign:
    """The day's digest campaign with one delivery per user with something to report (idempotent)."""
    now = timezone.now()
    day = day or now.date()
    key = f"daily-digest:{day.isoformat()}"
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
