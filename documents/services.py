"""The documents domain: store an upload and queue its thumbnails, and the questions asked about documents.

Everything here runs without a broker (a test or a shell can call it). The
work of the jobs is in ``ocr`` (OCR in page ranges) and ``thumbnails``; how
they end reaches the Document through the hooks in ``outcomes``.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import Count, Model, QuerySet

from documents import pdf
from documents.exceptions import DocumentFileMissing, EmptyFile, FileTooLarge, NotAPdf
from documents.job_types import THUMBNAILS
from documents.models import Document
from jobs.public import build_job, create_jobs, local_copy, scratch_dir, visible_to


# -- upload ------------------------------------------------------------------
def _safe_display_name(name: str) -> str:
    """The user's file name for display only: no path, no control characters."""
    base = re.split(r"[\\/]", name or "")[-1]
    cleaned = "".join(char for char in base if char.isprintable()).strip()
    return (cleaned or "document.pdf")[:255]


@contextlib.contextmanager
def _upload_on_disk(upload: UploadedFile) -> Iterator[Path]:
    """The upload as a file on this host for pdfinfo: Django's own temporary file for an upload
    over FILE_UPLOAD_MAX_MEMORY_SIZE, else a scratch copy of the (small) in-memory one."""
    temporary = getattr(upload, "temporary_file_path", None)
    if temporary is not None:
        yield Path(temporary())
        return
    with scratch_dir("upload") as directory:
        path = directory / "upload.pdf"
        with open(path, "wb") as out:
            for chunk in upload.chunks():
                out.write(chunk)
        yield path


def store_upload(owner: Any, upload: UploadedFile) -> Document:
    """Check an uploaded file by its content, store it under a generated name, queue its thumbnails.

    Nothing reads the whole file into memory: the header is sniffed, the hash
    is taken in chunks, pdfinfo reads the file on disk, and the storage
    streams it (the file system storage moves Django's temporary file, S3
    uploads it in parts). It is checked before it is stored, so a refused
    upload never reaches the storage.
    """
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
    with _upload_on_disk(upload) as path:
        page_count = pdf.inspect_pdf(path).pages
    upload.seek(0)
    document = Document(owner=owner, original_name=_safe_display_name(upload.name or ""), size=size)
    document.sha256 = digest.hexdigest()
    document.page_count = page_count
    document.file.save("upload.pdf", upload, save=False)
    try:
        with transaction.atomic():
            document.save(force_insert=True)
            enqueue_thumbnails([document], owner=owner)
    except BaseException:
        # No row points at the stored file: do not leave it in the storage.
        document.file.delete(save=False)
        raise
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
    """The document; a permanent error when it is gone or has no file (``document_on_disk`` finds a lost one)."""
    document = Document.objects.filter(id=document_id).first()
    if document is None:
        raise DocumentFileMissing(f"document {document_id} does not exist")
    if not document.file:
        raise DocumentFileMissing(f"the stored file of document {document_id} is missing")
    return document


@contextlib.contextmanager
def document_on_disk(document: Document) -> Iterator[Path]:
    """The document's PDF as a path on this host, for poppler and tesseract.

    With the file system storage this is the stored file; with object
    storage a copy streamed into the job's scratch directory, deleted when
    the block ends. A file missing from the storage is a permanent error.
    """
    with contextlib.ExitStack() as stack:
        try:
            path = stack.enter_context(local_copy(document.file.storage, document.file.name))
        except FileNotFoundError:
            raise DocumentFileMissing(f"the stored file of document {document.id} is missing") from None
        yield path


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
