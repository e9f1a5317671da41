"""The documents domain: store an upload, OCR a document in page ranges, make thumbnails.

Everything here runs without a broker (a test or a shell can call it); the
actors in ``tasks.py`` only call these functions. Inside a worker the
functions report progress and fan out child jobs through the jobs platform.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import Count
from django.utils import timezone
from PIL import Image

from documents import pdf
from documents.exceptions import (
    DocumentError,
    DocumentFileMissing,
    EmptyFile,
    FileTooLarge,
    NotAPdf,
)
from documents.models import Document, DocumentPage, DocumentStatus, PageSource, PageStatus
from jobs.core.context import current_job
from jobs.core.exceptions import JobCancelled, PermanentJobError
from jobs.worker.fanout import AwaitChildren, ChildJob, fan_out, report_parent_progress, set_parent_progress
from jobs.worker.isolation import ChildProcessFailed
from jobs.models import ACTIVE_STATUSES, Job, JobPriority, JobStatus
from jobs.worker.progress import progress
from jobs.core.queues import get_queue
from jobs.dispatch.services import build_job, create_jobs

logger = logging.getLogger(__name__)

OCR_JOB_TYPE = "pdf-ocr"
OCR_PAGES_JOB_TYPE = "pdf-ocr-pages"
OCR_QUEUE = "pdf-processing"
THUMBNAILS_JOB_TYPE = "thumbnails"
THUMBNAILS_DOCUMENT_JOB_TYPE = "thumbnails-document"
THUMBNAILS_QUEUE = "thumbnails"
#: Progress stages of an OCR job, as the customer described them.
LOADED, PAGES_START, PAGES_END, ASSEMBLED = 10, 20, 90, 95
#: Measured on this kind of machine: one pdftoppm + tesseract pipeline at 300 dpi.
DEFAULT_PAGES_PER_MINUTE_PER_SLOT = 40.0


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
) -> Job:
    """Record a thumbnails job for documents (sent after the surrounding transaction commits)."""
    job = build_job(
        job_type=THUMBNAILS_JOB_TYPE,
        queue=THUMBNAILS_QUEUE,
        actor="make_thumbnails",
        arguments={
            "document_ids": [str(document.id) for document in documents],
            "sizes": list(sizes or settings.THUMBNAIL_SIZES),
            "image_format": settings.THUMBNAIL_FORMAT,
            "force": force,
        },
        owner=owner,
    )
    return create_jobs([job])[0]


def visible_documents(user: Any) -> Any:
    """Staff see every document; anyone else only their own."""
    documents = Document.objects.all()
    if not getattr(user, "is_staff", False):
        documents = documents.filter(owner_id=getattr(user, "pk", None))
    return documents


def document_text(document: Document) -> str:
    """The document's text, pages in order separated by a form feed (as pdftotext does)."""
    texts = document.pages.order_by("number").values_list("text", flat=True)
    return "\f".join(texts)


def sync_status_with_job(document: Document) -> Document:
    """A document still ``processing`` whose OCR job stopped for good (cancelled, lost) is failed."""
    job = document.ocr_job
    if document.status == DocumentStatus.PROCESSING and job is not None and job.is_terminal:
        if job.status != JobStatus.COMPLETED:
            Document.mark_failed(str(document.id), f"OCR {job.status}: {job.error_message}".strip(": "))
            document.refresh_from_db()
    return document


# -- OCR: estimate and request -------------------------------------------------
def ocr_pages_per_minute() -> float:
    """Speed of recent completed OCR jobs (pages per minute), or the measured default."""
    results = (
        Job.objects.filter(type=OCR_JOB_TYPE, status=JobStatus.COMPLETED)
        .exclude(result=None)
        .order_by("-finished_at")
        .values_list("result", flat=True)[:20]
    )
    pages = seconds = 0.0
    for result in results:
        if isinstance(result, dict) and result.get("seconds") and result.get("pages"):
            pages += float(result["pages"])
            seconds += float(result["seconds"])
    if pages and seconds:
        return pages / seconds * 60.0
    return DEFAULT_PAGES_PER_MINUTE_PER_SLOT * get_queue(OCR_QUEUE).concurrency


def estimate_ocr_seconds(page_count: int) -> float:
    return max(5.0, page_count / ocr_pages_per_minute() * 60.0)


def running_ocr_job(document: Document) -> Job | None:
    job = document.ocr_job
    return job if job is not None and job.status in ACTIVE_STATUSES else None


def link_ocr_job(document: Document, job: Job) -> None:
    """A new OCR run starts from scratch: forget the pages of the previous run."""
    DocumentPage.objects.filter(document=document).delete()
    Document.objects.filter(id=document.id).update(
        ocr_job=job, status=DocumentStatus.PROCESSING, error="", updated_at=timezone.now()
    )


# -- OCR: the parent job -----------------------------------------------------
def _job_attempt_is_final(exc: BaseException) -> bool:
    running = current_job()
    if isinstance(exc, (PermanentJobError, JobCancelled)) or running is None:
        return True
    row = Job.objects.filter(id=running.job_id).values("attempts", "max_attempts").first()
    return row is None or row["attempts"] >= row["max_attempts"]


def load_document(document_id: str) -> Document:
    document = Document.objects.filter(id=document_id).first()
    if document is None:
        raise DocumentFileMissing(f"document {document_id} does not exist")
    if not document.file or not document.path.exists():
        raise DocumentFileMissing(f"the stored file of document {document_id} is missing")
    return document


def split_page_ranges(pages: Sequence[int], per_child: int, slots: int, batch: int) -> list[list[int]]:
    """Split pending page numbers into near-equal runs: at most ``per_child`` each, and at
    least one per worker slot once there are a few batches of pages."""
    if not pages:
        return []
    count = max(math.ceil(len(pages) / per_child), min(slots, math.ceil(len(pages) / batch)))
    size = math.ceil(len(pages) / count)
    return [list(pages[start : start + size]) for start in range(0, len(pages), size)]


def _ocr_progress_data(document_id: str, total: int) -> dict[str, Any]:
    finished = DocumentPage.objects.filter(
        document_id=document_id, status__in=(PageStatus.DONE, PageStatus.FAILED)
    ).count()
    return {"pages_processed": finished, "total_pages": total, "document_id": document_id}


def start_document_ocr(document_id: str) -> AwaitChildren | dict[str, Any]:
    """Load the document, create its page rows and fan out page-range children."""
    try:
        document = load_document(document_id)
        Document.objects.filter(id=document_id).exclude(status=DocumentStatus.PROCESSING).update(
            status=DocumentStatus.PROCESSING, error=""
        )
        total = pdf.inspect_pdf(document.path).pages
        Document.objects.filter(id=document_id).update(page_count=total)
        DocumentPage.objects.bulk_create(
            [DocumentPage(document_id=document.id, number=n) for n in range(1, total + 1)],
            ignore_conflicts=True,
        )
        data = _ocr_progress_data(document_id, total)
        progress(LOADED, "File loaded", force=True, **data)
        pending = list(
            DocumentPage.objects.filter(document_id=document_id, status=PageStatus.PENDING)
            .order_by("number")
            .values_list("number", flat=True)
        )
    except Exception as exc:
        if _job_attempt_is_final(exc):
            Document.mark_failed(document_id, str(exc))
        raise
    if not pending:
        # A retry after every page was read: nothing to fan out.
        return finish_document_ocr(document_id, started_at=None)
    running = current_job()
    priority: str = JobPriority.NORMAL
    if running is not None:
        priority = Job.objects.filter(id=running.job_id).values_list("priority", flat=True).first() or priority
    ranges = split_page_ranges(
        pending, settings.OCR_PAGES_PER_CHILD, get_queue(OCR_QUEUE).concurrency, settings.OCR_BATCH_PAGES
    )
    children = [
        ChildJob(
            actor="ocr_page_range",
            job_type=OCR_PAGES_JOB_TYPE,
            arguments={"document_id": document_id, "first_page": run[0], "last_page": run[-1]},
            priority=priority,
        )
        for run in ranges
    ]
    message = f"Processing page {data['pages_processed']} of {total}"
    return fan_out(
        children,
        unit="page ranges",
        progress_range=(PAGES_START, PAGES_END),
        data={**data, "message": message},
        own_progress=True,
    )


def finish_document_ocr(document_id: str, *, started_at: Any, parent: Job | None = None) -> dict[str, Any]:
    """Every page is read or recorded with its error: assemble, mark the document, summarise."""
    if parent is not None:
        failed_ranges = Job.objects.filter(
            parent=parent, status__in=(JobStatus.FAILED, JobStatus.CANCELLED)
        ).values_list("arguments", "error_message", "status")
        for arguments, error, status in failed_ranges:
            DocumentPage.objects.filter(
                document_id=document_id,
                status=PageStatus.PENDING,
                number__gte=arguments["first_page"],
                number__lte=arguments["last_page"],
            ).update(status=PageStatus.FAILED, error=f"its page-range job {status}: {error}"[:2000])
    counts = dict(
        DocumentPage.objects.filter(document_id=document_id).values_list("status").annotate(n=Count("id")).order_by()
    )
    by_source = dict(
        DocumentPage.objects.filter(document_id=document_id, status=PageStatus.DONE)
        .values_list("source")
        .annotate(n=Count("id"))
        .order_by()
    )
    total = sum(counts.values())
    done, failed = counts.get(PageStatus.DONE, 0), counts.get(PageStatus.FAILED, 0)
    data = {"pages_processed": done + failed, "total_pages": total, "document_id": document_id}
    if parent is not None:
        _parent_stage(parent, ASSEMBLED, "Text assembled", data)
    else:
        progress(ASSEMBLED, "Text assembled", force=True, **data)
    if done == 0:
        first_error = (
            DocumentPage.objects.filter(document_id=document_id, status=PageStatus.FAILED)
            .order_by("number")
            .values_list("error", flat=True)
            .first()
        )
        reason = f"no page could be read ({failed} failed): {first_error or 'unknown error'}"
        Document.mark_failed(document_id, reason)
        raise DocumentError(reason)
    Document.mark_ready(document_id)
    seconds = (timezone.now() - started_at).total_seconds() if started_at else None
    return {
        "document_id": document_id,
        "pages": total,
        "text_layer_pages": by_source.get(PageSource.TEXT_LAYER, 0),
        "ocr_pages": by_source.get(PageSource.OCR, 0),
        "failed_pages": failed,
        "seconds": round(seconds, 2) if seconds else None,
        "pages_per_minute": round(total / seconds * 60, 1) if seconds else None,
    }


def _parent_stage(parent: Job, percent: int, message: str, data: dict[str, Any]) -> None:
    set_parent_progress(str(parent.id), percent, message, **data)


def on_ocr_children_done(parent: Job, summary: dict[str, int]) -> dict[str, Any]:
    """The ``on_children_done`` hook of ``pdf-ocr``: the last page-range child calls it."""
    document_id = str(parent.arguments["document_id"])
    try:
        return finish_document_ocr(document_id, started_at=parent.started_at, parent=parent)
    except Exception as exc:
        Document.mark_failed(document_id, str(exc))
        raise


# -- OCR: the page-range children ----------------------------------------------
def _batches(numbers: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(numbers), size):
        yield list(numbers[start : start + size])


def _runs(numbers: Sequence[int]) -> Iterator[tuple[int, int]]:
    """Contiguous runs of sorted page numbers, as (first, last)."""
    start = previous = None
    for number in numbers:
        if start is None:
            start = previous = number
        elif number == (previous or 0) + 1:
            previous = number
        else:
            yield start, previous or start
            start = previous = number
    if start is not None:
        yield start, previous or start


def ocr_page_range(document_id: str, first_page: int, last_page: int) -> dict[str, Any]:
    """Read pages ``first_page``..``last_page`` in batches, saving each page as it finishes."""
    document = load_document(document_id)
    total = document.page_count or last_page
    pending = list(
        DocumentPage.objects.filter(
            document_id=document_id,
            status=PageStatus.PENDING,
            number__gte=first_page,
            number__lte=last_page,
        )
        .order_by("number")
        .values_list("number", flat=True)
    )
    todo, finished = len(pending), 0
    outcome = {"pages": todo, "done": 0, "failed": 0}
    for batch in _batches(pending, settings.OCR_BATCH_PAGES):
        progress(100 * finished / max(1, todo), f"Pages {batch[0]}-{batch[-1]}")
        for number, ok in read_page_batch(document, batch):
            finished += 1
            outcome["done" if ok else "failed"] += 1
            data = _ocr_progress_data(document_id, total)
            percent = PAGES_START + (PAGES_END - PAGES_START) * data["pages_processed"] / max(1, total)
            report_parent_progress(percent, f"Processing page {data['pages_processed']} of {total}", **data)
            progress(100 * finished / max(1, todo), f"Page {number}", page=number)
    return outcome


def read_page_batch(document: Document, numbers: list[int]) -> Iterator[tuple[int, bool]]:
    """Read a batch of pages: text layer where usable, else render + OCR; yield (page, ok)."""
    path, dpi = document.path, settings.OCR_DPI
    first, last = numbers[0], numbers[-1]
    try:
        layer = pdf.text_layer(path, first, last)
    except ChildProcessFailed as exc:
        logger.warning("No text layer for pages %s-%s of %s: %s", first, last, document.id, exc)
        layer = {}
    needs_ocr: list[int] = []
    for number in numbers:
        text = layer.get(number, "")
        if pdf.has_usable_text(text):
            _save_page(document, number, text=text.strip(), source=PageSource.TEXT_LAYER, attempts=1)
            yield number, True
        else:
            needs_ocr.append(number)
    if not needs_ocr:
        return
    refused = _refuse_oversized(document, needs_ocr, dpi)
    for number, error in refused.items():
        _fail_page(document, number, error, attempts=0)
        yield number, False
    needs_ocr = [number for number in needs_ocr if number not in refused]
    with tempfile.TemporaryDirectory(prefix="conveyor-ocr-") as scratch:
        out_dir = Path(scratch)
        rendered: dict[int, Path] = {}
        for run_first, run_last in _runs(needs_ocr):
            try:
                rendered.update(pdf.render_pages(path, run_first, run_last, dpi, out_dir))
            except ChildProcessFailed as exc:
                # Render page by page below: one bad page must not sink the batch.
                logger.info("Batch render of pages %s-%s failed (%s); per page", run_first, run_last, exc)
        for number in needs_ocr:
            yield number, _ocr_page_with_retries(document, number, rendered.pop(number, None), out_dir)


def _refuse_oversized(document: Document, numbers: list[int], dpi: int) -> dict[int, str]:
    first, last = numbers[0], numbers[-1]
    try:
        sizes = pdf.page_sizes(document.path, first, last)
        images = pdf.image_sizes(document.path, first, last)
    except ChildProcessFailed as exc:
        logger.warning("Could not measure pages %s-%s of %s: %s", first, last, document.id, exc)
        return {}
    refused = {}
    for number in numbers:
        try:
            pdf.check_page_pixels(number, sizes.get(number), images.get(number, []), dpi)
        except PermanentJobError as exc:
            refused[number] = str(exc)
    return refused


def _ocr_page_with_retries(document: Document, number: int, image: Path | None, out_dir: Path) -> bool:
    """OCR one page, retried on its own; a page that keeps failing is recorded with its error."""
    attempts = settings.OCR_PAGE_ATTEMPTS
    error = ""
    for attempt in range(1, attempts + 1):
        try:
            if image is None or not image.exists():
                image = pdf.render_pages(document.path, number, number, settings.OCR_DPI, out_dir).get(number)
                if image is None:
                    raise ChildProcessFailed(f"pdftoppm produced no image for page {number}")
            text, confidence = ocr_image(image)
        except PermanentJobError as exc:
            _fail_page(document, number, str(exc), attempts=attempt)
            return False
        except ChildProcessFailed as exc:
            error = str(exc)
            logger.warning("Page %s of %s failed (attempt %s of %s): %s", number, document.id, attempt, attempts, error)
            if image is not None:
                image.unlink(missing_ok=True)
            image = None
            continue
        image.unlink(missing_ok=True)
        _save_page(document, number, text=text, source=PageSource.OCR, confidence=confidence, attempts=attempt)
        return True
    _fail_page(document, number, f"failed {attempts} times: {error}", attempts=attempts)
    return False


def ocr_image(image: Path) -> tuple[str, float | None]:
    """OCR one rendered page (a seam for tests that inject a failing page)."""
    return pdf.recognise(image, settings.OCR_LANGUAGE)


def _save_page(
    document: Document,
    number: int,
    *,
    text: str,
    source: str,
    attempts: int,
    confidence: float | None = None,
) -> None:
    DocumentPage.objects.filter(document=document, number=number).update(
        status=PageStatus.DONE,
        text=text,
        source=source,
        confidence=confidence,
        error="",
        attempts=attempts,
        updated_at=timezone.now(),
    )


def _fail_page(document: Document, number: int, error: str, *, attempts: int) -> None:
    DocumentPage.objects.filter(document=document, number=number).update(
        status=PageStatus.FAILED, error=error[:2000], attempts=attempts, updated_at=timezone.now()
    )


# -- thumbnails --------------------------------------------------------------
def fan_out_thumbnails(
    document_ids: Sequence[str], sizes: Sequence[int], image_format: str, force: bool
) -> AwaitChildren:
    """One child job per document; the parent reports "3 of 10 documents"."""
    children = [
        ChildJob(
            actor="make_document_thumbnails",
            job_type=THUMBNAILS_DOCUMENT_JOB_TYPE,
            arguments={
                "document_id": str(document_id),
                "sizes": list(sizes),
                "image_format": image_format,
                "force": force,
            },
        )
        for document_id in document_ids
    ]
    return fan_out(children, unit="documents", progress_range=(0, 100))


def make_document_thumbnails(
    document_id: str, sizes: Sequence[int], image_format: str = "png", force: bool = False
) -> dict[str, Any]:
    """Render page 1 once at the largest size and downscale it to every size that is missing."""
    document = load_document(document_id)
    wanted = sorted({int(size) for size in sizes}, reverse=True)
    missing = [size for size in wanted if force or document.thumbnail_path(size) is None]
    if not missing:
        return {"document_id": document_id, "made": [], "skipped": wanted}
    pdf.inspect_pdf(document.path)
    # Rendering is bounded by -scale-to; an embedded image is decoded whole, so refuse a bomb first.
    pdf.check_page_pixels(1, None, pdf.image_sizes(document.path, 1, 1).get(1, []), settings.OCR_DPI)
    progress(10, "Rendering page 1")
    target = document.thumbnail_dir
    target.mkdir(parents=True, exist_ok=True)
    extension = "webp" if image_format == "webp" else "png"
    with tempfile.TemporaryDirectory(prefix="conveyor-thumb-") as scratch:
        rendered = pdf.render_first_page(document.path, missing[0], Path(scratch))
        with Image.open(rendered) as page:
            page.load()
            for size in missing:
                thumbnail = page.copy()
                thumbnail.thumbnail((size, size), Image.Resampling.LANCZOS)
                final = target / f"{size}.{extension}"
                partial = target / f".{size}.{extension}.partial"
                thumbnail.save(partial, format=extension.upper())
                os.replace(partial, final)
                for other in ("png", "webp"):
                    if other != extension:
                        (target / f"{size}.{other}").unlink(missing_ok=True)
    progress(100, "Thumbnails made")
    return {"document_id": document_id, "made": missing, "skipped": [s for s in wanted if s not in missing]}


def on_thumbnail_children_done(parent: Job, summary: dict[str, int]) -> dict[str, Any]:
    """The parent's result: what was made, and each broken document's own error."""
    errors = {
        str(arguments["document_id"]): error
        for arguments, error in Job.objects.filter(
            parent=parent, status__in=(JobStatus.FAILED, JobStatus.CANCELLED)
        ).values_list("arguments", "error_message")
    }
    return {
        "documents": summary["children"],
        "completed": summary["completed"],
        "failed": summary["failed"] + summary["cancelled"],
        "errors": errors,
    }
