"""The documents domain: store an upload and queue its thumbnails, and the questions asked about documents.

Everything here runs without a broker (a test or a shell can call it). The
work of the jobs is in ``ocr`` (OCR in page ranges) and ``thumbnails``; how
they end reaches the Document through the hooks in ``outcomes``.
"""

from __future__ import annotations

import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import Count, Model, QuerySet

from documents import pdf
from documents.exceptions import DocumentError, DocumentFileMissing, EmptyFile, FileTooLarge, NotAPdf
from documents.job_types import THUMBNAILS
from documents.models import Document
from jobs.public import build_job, create_jobs, visible_to


# -- upload ------------------------------------------------------------------
def _safe_display_name(name: str) -> str:
    """The user's file name for display only: no path, no control characters."""
    base = re.split(r"[\\/]", name or "")[-1]
    cleaned = "".join(char for char in base if char.isprintable()).strip()
    return (cleaned or "document.pdf")[:255]


def store_upload(owner: Any, upload: UploadedFile) -> Document:
    """Check an uploaded file by its content, store it under a generated name, queue its thumbnails."""
    size = upload.size or 0
    if size == 0:
        raise EmptyFile("the file is empty (0 bytes)")
    if size > settings.DOCUMENT_MAX_UPLOAD_BYTES:
        raise FileTooLarge(
            f"the file is {size / 1024 / 1024:.1f} MB; the limit is {settings.DOCUMENT_MAX_UPLOAD_MB} MB"
        )
    upload.seek(0)
    if not pdf.looks_like_pdf(upload.read(pdf.HEADER_WINDOW)):
        raise NotAPdf("the file is not a PDF: its content does not start with a PDF header")
    upload.seek(0)
    digest = hashlib.sha256()
    for chunk in upload.chunks():
        digest.update(chunk)
    upload.seek(0)
    document = Document(owner=owner, original_name=_safe_display_name(upload.name or ""), size=size)
    document.sha256 = digest.hexdigest()
    document.file.save("upload.pdf", upload, save=False)
    try:
        document.page_count = pdf.inspect_pdf(document.path).pages
    except DocumentError:
        document.file.delete(save=False)
        raise
    with transaction.atomic():
        document.save(force_insert=True)
        enqueue_thumbnails([document], owner=owner)
    return document


def enqueue_thumbnails(
    documents: Sequence[Document], *, owner: Any, sizes: Sequence[int] | None = None, force: bool = False
) -> Model:
    """Record a thumbnails job for documents (sent after the surrounding transaction commits); returns its Job."""
    job = build_job(
        job_type=THUMBNAILS.name,
        queue=THUMBNAILS.queue,
        actor=THUMBNAILS.actor,
        arguments={
            "document_ids": [str(document.id) for document in documents],
            "sizes": list(sizes or settings.THUMBNAIL_SIZES),
            "image_format": settings.THUMBNAIL_FORMAT,
            "force": force,
        },
        owner=owner,
    )
    return create_jobs([job])[0]


# -- questions about documents -------------------------------------------------
def visible_documents(user: Any) -> QuerySet[Document]:
    """Staff see every document; anyone else only their own."""
    return visible_to(Document.objects.all(), user)


def load_document(document_id: str) -> Document:
    """The document, with its stored file; a permanent error when either is gone."""
    document = Document.objects.filter(id=document_id).first()
    if document is None:
        raise DocumentFileMissing(f"document {document_id} does not exist")
    if not document.file or not document.path.exists():
        raise DocumentFileMissing(f"the stored file of document {document_id} is missing")
    return document


def document_text(document: Document) -> str:
    """The document's text, pages in order separated by a form feed (as pdftotext does)."""
    texts = document.pages.order_by("number").values_list("text", flat=True)
    return "\f".join(texts)


def documents_by_status(user_ids: Iterable[int], since: datetime) -> dict[int, dict[str, int]]:
    """The documents each user uploaded since ``since``, counted by status (the daily digest's activity)."""
    counts: dict[int, dict[str, int]] = defaultdict(dict)
    rows = (
        Document.objects.filter(owner_id__in=list(user_ids), created_at__gte=since)
        .values_list("owner_id", "status")
        .annotate(n=Count("pk"))
        .order_by()
    )
    for owner_id, status, n in rows:
        counts[owner_id][str(status)] = n
    return dict(counts)
