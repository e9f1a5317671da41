"""The documents and deliveries datasets: the owner's rows, exactly, in both formats."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from campaigns.models import Campaign, Delivery, DeliveryStatus
from documents.models import DocumentStatus
from exports.models import Export
from exports.services import create_export, validate_export_request, write_export
from tests.exports.helpers import read_csv, read_xlsx
from tests.factories import DocumentFactory, EmailTemplateFactory

pytestmark = pytest.mark.django_db(transaction=True)

SENT = datetime(2026, 11, 20, 8, 30, 0, tzinfo=UTC)


def _export(user, query_params, export_format="csv"):
    dataset, query = validate_export_request(user, query_params)
    export = create_export(user, dataset, query, export_format)
    Export.mark_running(str(export.id))
    relative = f"exports/test-{export.id}.{export_format}"
    write_export(str(export.id), relative)
    return relative


def test_documents_export_lists_the_owners_documents_with_pages_and_status(media_root, user, other_user):
    mine = [
        DocumentFactory(owner=user, original_name='report, "final".pdf', page_count=12),
        DocumentFactory(owner=user, original_name="scan.pdf", page_count=None, status=DocumentStatus.FAILED),
    ]
    DocumentFactory(owner=other_user)
    relative = _export(user, {"dataset": "documents", "fields": ["id", "name", "page_count", "status"]})
    header, rows = read_csv((media_root / relative).read_bytes())
    assert header == ["id", "name", "page_count", "status"]
    assert rows == [
        [str(doc.id), doc.original_name, "" if doc.page_count is None else str(doc.page_count), doc.status]
        for doc in sorted(mine, key=lambda d: (d.created_at, str(d.id)))
    ]


def test_documents_status_filter_narrows_the_export(media_root, user):
    DocumentFactory(owner=user, status=DocumentStatus.READY)
    failed = DocumentFactory(owner=user, status=DocumentStatus.FAILED)
    relative = _export(user, {"dataset": "documents", "filters": {"status": "failed"}, "fields": ["id"]}, "xlsx")
    assert read_xlsx(media_root / relative)[1] == [[str(failed.id)]]


def _campaign(owner, recipients):
    campaign = Campaign.objects.create(name=f"news for {owner}", template=EmailTemplateFactory(), owner=owner)
    for n, (recipient, status) in enumerate(recipients):
        Delivery.objects.create(
            campaign=campaign,
            user=recipient,
            email=recipient.email,
            status=status,
            sent_at=SENT + timedelta(minutes=n) if status == DeliveryStatus.SENT else None,
            smtp_response="250 OK" if status == DeliveryStatus.SENT else "550 no such user",
        )
    return campaign


def test_deliveries_export_has_the_results_of_the_owners_campaigns(media_root, user, other_user, staff):
    mine = _campaign(user, [(other_user, DeliveryStatus.SENT), (staff, DeliveryStatus.BOUNCED)])
    _campaign(other_user, [(user, DeliveryStatus.SENT)])
    relative = _export(user, {"dataset": "deliveries"}, "xlsx")
    header, rows = read_xlsx(media_root / relative)
    assert header == [
        "id",
        "campaign_id",
        "campaign",
        "email",
        "status",
        "attempts",
        "sent_at",
        "smtp_response",
    ]
    expected = [
        [
            d.id,
            mine.id,
            mine.name,
            d.email,
            d.status,
            d.attempts,
            d.sent_at and d.sent_at.replace(tzinfo=None),
            d.smtp_response,
        ]
        for d in mine.deliveries.order_by("id")
    ]
    assert rows == expected


def test_deliveries_filters_by_campaign_and_status(media_root, user, other_user, staff):
    first = _campaign(user, [(other_user, DeliveryStatus.SENT), (staff, DeliveryStatus.BOUNCED)])
    _campaign(user, [(other_user, DeliveryStatus.BOUNCED)])
    relative = _export(
        user,
        {
            "dataset": "deliveries",
            "filters": {"campaign_id": [first.id], "status": "bounced"},
            "fields": ["email"],
        },
    )
    assert read_csv((media_root / relative).read_bytes())[1] == [[staff.email]]
