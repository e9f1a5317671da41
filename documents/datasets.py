"""The documents dataset: what a user can export of their documents (registered from ``ready()``)."""

from __future__ import annotations

from django.contrib.auth import get_user_model

from documents.models import Document, DocumentStatus
from jobs.public import DATETIME, INTEGER, TEXT, Column, Dataset, Filter, choice, quoted_table, register_dataset


def _documents_from() -> str:
    return f"{quoted_table(Document)} d LEFT JOIN {quoted_table(get_user_model())} u ON u.id = d.owner_id"


DOCUMENTS = register_dataset(
    Dataset(
        name="documents",
        description="Your documents with their page counts and statuses.",
        from_sql=_documents_from,
        fields={
            "id": Column("d.id", kind="uuid"),
            "name": Column("d.original_name"),
            "status": Column("d.status"),
            "page_count": Column("d.page_count"),
            "size_bytes": Column("d.size"),
            "owner": Column("u.username"),
            "created_at": Column("d.created_at", kind="datetime"),
            "updated_at": Column("d.updated_at", kind="datetime"),
            "error": Column("d.error"),
        },
        filters={
            "status": Filter("d.status", "in", choice([status.value for status in DocumentStatus])),
            "name_contains": Filter("d.original_name", "icontains", TEXT),
            "created_after": Filter("d.created_at", "gte", DATETIME),
            "created_before": Filter("d.created_at", "lt", DATETIME),
            "min_pages": Filter("d.page_count", "gte", INTEGER),
            "owner_id": Filter("d.owner_id", "exact", INTEGER),
        },
        orderings={
            "created_at": "d.created_at",
            "name": "d.original_name",
            "page_count": "d.page_count",
            "status": "d.status",
        },
        default_ordering="created_at",
        tiebreak="d.id",
        owner_sql="d.owner_id",
    )
)
