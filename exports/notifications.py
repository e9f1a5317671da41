"""Telling staff about the weekly analytics export: an email, and a link in the weekly Slack report.

The email goes to every active staff user with an address, one message
each (no one sees the others' addresses), through Django's configured
email backend (``EMAIL_BACKEND``, ``EMAIL_HOST``, ...). The CSV is attached
when it is at most ``WEEKLY_ANALYTICS_ATTACH_MAX_KB``; a larger one is left
to its admin page, which every email links (``SITE_URL`` + the admin path).
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import EmailMessage, get_connection
from django.template.defaultfilters import filesizeformat
from django.urls import reverse

from exports.models import JOB_METRICS_DATASET, Export, ExportStatus
from jobs.public import fenced, open_stream

logger = logging.getLogger(__name__)

#: How the weekly Slack report titles its link to the export.
REPORT_LINK_TITLE = "Weekly analytics CSV"


def export_admin_url(export_id: Any) -> str:
    """The absolute address of an export's admin page (staff sign in there and download it)."""
    return settings.SITE_URL + reverse("admin:exports_export_change", args=[export_id])


def staff_addresses() -> list[str]:
    """Addresses of the active staff users who have one, each once."""
    staff = get_user_model().objects.filter(is_staff=True, is_active=True).exclude(email="")
    return sorted(set(staff.values_list("email", flat=True)))


def attaches(export: Export) -> bool:
    """Whether the file is small enough to travel in the email."""
    ceiling = settings.WEEKLY_ANALYTICS_ATTACH_MAX_KB * 1024
    return export.size_bytes is not None and 0 < ceiling and export.size_bytes <= ceiling


def _period(export: Export) -> str:
    filters = (export.query_params or {}).get("filters") or {}
    try:
        start = datetime.fromisoformat(str(filters["finished_after"]))
        end = datetime.fromisoformat(str(filters["finished_before"]))
    except (KeyError, ValueError):
        return f"the week before {export.created_at:%Y-%m-%d}"
    return f"{start:%Y-%m-%d} to {end - timedelta(days=1):%Y-%m-%d}"


def weekly_analytics_messages(export: Export, addresses: list[str]) -> list[EmailMessage]:
    """One message per address: the week's per-queue job metrics, attached or linked."""
    link = export_admin_url(export.id)
    period = _period(export)
    size = filesizeformat(export.size_bytes or 0)
    content = None
    if attaches(export):
        stream, _ = open_stream(export.file.storage, export.file.name)
        with stream:
            content = stream.read()
        where = f"The CSV ({size}) is attached; it is also on its admin page:\n{link}"
    else:
        where = f"The CSV ({size}) is too large to attach: download it from its admin page:\n{link}"
    body = (
        f"Per-queue job metrics for {period} (UTC): {export.row_count or 0} queue(s).\n\n{where}\n\n"
        f"The file is kept until {export.expires_at:%Y-%m-%d %H:%M} UTC.\n"
    )
    messages = []
    for address in addresses:
        message = EmailMessage(
            subject=f"[{settings.SITE_NAME}] Weekly analytics, {period}",
            body=body,
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=[address],
        )
        if content is not None:
            message.attach(export.download_name, content, export.content_type)
        messages.append(message)
    return messages


def email_staff_about(export: Export) -> int:
    """Email the completed weekly analytics export to staff, once; returns how many were sent.

    Sent, then recorded (``Export.mark_staff_notified``): a job retried after
    the SMTP server refused sends again, one stopped between the two sends
    twice at most. An export already recorded is not sent again.
    """
    if export.status != ExportStatus.COMPLETED or export.staff_notified_at is not None:
        return 0
    addresses = staff_addresses()
    sent = 0
    if addresses:
        with get_connection() as connection:
            sent = connection.send_messages(weekly_analytics_messages(export, addresses)) or 0
    else:
        logger.warning("Weekly analytics export %s: no active staff user has an email address", export.id)
    with fenced():
        Export.mark_staff_notified(str(export.id))
    return sent


def weekly_analytics_url(start: datetime, end: datetime) -> str | None:
    """The admin page of the analytics export made for the week ``start``-``end``, for the Slack report.

    The schedule exports the week on the Monday that ends it (06:00, an hour
    before the report): the newest completed system export of the dataset
    made from ``end`` on.
    """
    export = (
        Export.objects.filter(
            owner__isnull=True,
            dataset=JOB_METRICS_DATASET,
            status=ExportStatus.COMPLETED,
            created_at__gte=end,
            created_at__lt=end + timedelta(days=7),
        )
        .order_by("-created_at")
        .only("id")
        .first()
    )
    return export_admin_url(export.id) if export is not None else None
