"""OCR a document: the parent run that fans out page ranges, and the page-range children that read them.

The parent (``pdf-ocr``) loads the document, creates one row per page and
starts ``pdf-ocr-pages`` children over the pages still pending. Each child
reads its pages in batches: the text layer where it is usable, else a render
and tesseract, each page retried on its own and saved as soon as it is read
(so a retried job resumes where it stopped). When the last child ends, the
type's ``on_children_done`` hook assembles the text (``outcomes``).

Every write a run makes here is in the platform's ``fenced()``: a run whose
job another worker took over (it was frozen, or cut off from Redis) saves no
page and stops (``RunSuperseded``); the run that took over reads the pages
still pending.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone

from documents import pdf
from documents.exceptions import PageNotMeasurable
from documents.job_types import OCR_PAGES, ocr_pages_per_minute
from documents.models import Document, DocumentPage, DocumentStatus, PageSource, PageStatus
from documents.outcomes import LOADED, PAGES_END, PAGES_START, STARTED_AT, finish_document_ocr, ocr_progress_data
from documents.services import document_on_disk, load_document
from jobs.public import (
    AwaitChildren,
    ChildJob,
    ChildProcessFailed,
    PermanentJobError,
    fan_out,
    fenced,
    get_queue,
    others_waiting,
    progress,
    report_parent_progress,
    scratch_dir,
    yield_if_others_wait,
)

logger = logging.getLogger(__name__)


# -- the parent run ---------------------------------------------------------------
def split_page_ranges(pages: Sequence[int], per_child: int, slots: int, batch: int) -> list[list[int]]:
    """Split pending page numbers into runs that shrink towards the end (guided scheduling).

    Each run is a share of the pages still left (a quarter per two slots), rounded up to
    whole batches and at most ``per_child``, so a long document starts with big runs and
    ends with single batches. Children are not preempted: small last runs let the slots
    finish together instead of one slot reading a 50-page run alone, and let another
    owner's job, which fair dispatch puts next, wait behind a batch rather than a range.
    """
    ranges: list[list[int]] = []
    start = 0
    while start < len(pages):
        share = math.ceil((len(pages) - start) / (2 * slots))
        size = min(per_child, batch * math.ceil(share / batch))
        ranges.append(list(pages[start : start + size]))
        start += size
    return ranges


def start_document_ocr(document_id: str) -> AwaitChildren | dict[str, Any]:
    """Load the document, create its page rows and fan out page-range children (of the parent's priority).

    An error here fails the job, and the type's ``on_failed`` hook fails the
    document once no attempt is left.
    """
    started_at = timezone.now()
    document = load_document(document_id)
    with fenced():
        Document.objects.filter(id=document_id).exclude(status=DocumentStatus.PROCESSING).update(
            status=DocumentStatus.PROCESSING, error=""
        )
    with document_on_disk(document) as path:
        total = pdf.inspect_pdf(path).pages
    with fenced():
        Document.objects.filter(id=document_id).update(page_count=total)
        DocumentPage.objects.bulk_create(
            [DocumentPage(document_id=document.id, number=n) for n in range(1, total + 1)],
            ignore_conflicts=True,
        )
    data = ocr_progress_data(document_id, total)
    progress(LOADED, "File loaded", force=True, **data)
    pending = list(
        DocumentPage.objects.filter(document_id=document_id, status=PageStatus.PENDING)
        .order_by("number")
        .values_list("number", flat=True)
    )
    if not pending:
        # A retry after every page was read: nothing to fan out.
        return finish_document_ocr(document_id, started_at=None)
    ranges = split_page_ranges(
        pending, settings.OCR_PAGES_PER_CHILD, get_queue(OCR_PAGES.queue).concurrency, settings.OCR_BATCH_PAGES
    )
    seconds_per_page = 60.0 / ocr_pages_per_minute()
    children = [
        ChildJob.of(
            OCR_PAGES,
            {"document_id": document_id, "first_page": run[0], "last_page": run[-1]},
            # Each range's own size: what fair dispatch charges the owner for it.
            estimated_duration_s=len(run) * seconds_per_page,
        )
        for run in ranges
    ]
    message = f"Processing page {data['pages_processed']} of {total}"
    return fan_out(
        children,
        unit="page ranges",
        progress_range=(PAGES_START, PAGES_END),
        data={**data, "message": message, STARTED_AT: started_at.isoformat()},
        own_progress=True,
    )


# -- the page-range children ------------------------------------------------------
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
    if not pending:
        return outcome
    # One copy of the PDF for the whole range (none with the file system storage).
    with document_on_disk(document) as path:
        for batch in _batches(pending, settings.OCR_BATCH_PAGES):
            progress(100 * finished / max(1, todo), f"Pages {batch[0]}-{batch[-1]}")
            for number, ok in read_page_batch(document, batch, path):
                finished += 1
                outcome["done" if ok else "failed"] += 1
                data = ocr_progress_data(document_id, total)
                percent = PAGES_START + (PAGES_END - PAGES_START) * data["pages_processed"] / max(1, total)
                report_parent_progress(percent, f"Processing page {data['pages_processed']} of {total}", **data)
                progress(100 * finished / max(1, todo), f"Page {number}", page=number)
                if finished < todo:
                    # A range is not preempted: after each page it lets another customer's waiting job
                    # in (while one waits, pages are rendered one at a time: none is rendered twice).
                    yield_if_others_wait(f"Read up to page {number}")
    return outcome


def read_page_batch(document: Document, numbers: list[int], path: Path) -> Iterator[tuple[int, bool]]:
    """Read a batch of pages of the PDF at ``path`` (a local copy): text layer where usable, else
    render + OCR; yield (page, ok)."""
    dpi = settings.OCR_DPI
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
    refused = _refuse_oversized(document, path, needs_ocr, dpi)
    for number, error in refused.items():
        _fail_page(document, number, error, attempts=0)
        yield number, False
    needs_ocr = [number for number in needs_ocr if number not in refused]
    with scratch_dir("ocr") as out_dir:
        rendered: dict[int, Path | None] = {}
        for index, number in enumerate(needs_ocr):
            if number not in rendered:
                rendered.update(_render_ahead(path, needs_ocr[index:], dpi, out_dir))
            yield number, _ocr_page_with_retries(document, path, number, rendered.pop(number, None), out_dir)


def _render_ahead(path: Path, numbers: list[int], dpi: int, out_dir: Path) -> dict[int, Path | None]:
    """Render ``numbers[0]`` and the pages that follow it in one run; a page that fails maps to None.

    Only ``numbers[0]`` while another customer waits: the range makes way after
    this page (``yield_if_others_wait``), and pages rendered ahead would be
    rendered again by its next run.
    """
    first, last = next(_runs(numbers))
    if others_waiting():
        last = first
    attempted: dict[int, Path | None] = dict.fromkeys(range(first, last + 1))
    try:
        return {**attempted, **pdf.render_pages(path, first, last, dpi, out_dir)}
    except ChildProcessFailed as exc:
        # Rendered page by page by _ocr_page_with_retries: one bad page must not sink the others.
        logger.info("Batch render of pages %s-%s failed (%s); per page", first, last, exc)
        return attempted


def _refuse_oversized(document: Document, path: Path, numbers: list[int], dpi: int) -> dict[int, str]:
    """The pages not to render, with the reason: over the pixel cap, or not measurable (fails closed).

    The batch is measured at once; if pdfinfo or pdfimages fails on it, each
    page is measured alone, so one bad page does not refuse the others.
    """
    first, last = numbers[0], numbers[-1]
    try:
        sizes = pdf.page_sizes(path, first, last)
        images = pdf.image_sizes(path, first, last)
    except ChildProcessFailed as exc:
        logger.warning("Could not measure pages %s-%s of %s (%s); measuring each page", first, last, document.id, exc)
        return _refuse_oversized_one_by_one(document, path, numbers, dpi)
    return _check_pixels(numbers, sizes, images, dpi)


def _refuse_oversized_one_by_one(document: Document, path: Path, numbers: list[int], dpi: int) -> dict[int, str]:
    refused = {}
    for number in numbers:
        try:
            sizes = pdf.page_sizes(path, number, number)
            images = pdf.image_sizes(path, number, number)
        except ChildProcessFailed as exc:
            logger.warning("Could not measure page %s of %s: %s", number, document.id, exc)
            refused[number] = str(
                PageNotMeasurable(
                    f"page {number} was not read: its size and images could not be checked before rendering ({exc})"
                )
            )
            continue
        refused.update(_check_pixels([number], sizes, images, dpi))
    return refused


def _check_pixels(
    numbers: list[int], sizes: dict[int, tuple[float, float]], images: dict[int, list[tuple[int, int]]], dpi: int
) -> dict[int, str]:
    refused = {}
    for number in numbers:
        try:
            pdf.check_page_pixels(number, sizes.get(number), images.get(number, []), dpi)
        except PermanentJobError as exc:
            refused[number] = str(exc)
    return refused


def _ocr_page_with_retries(document: Document, path: Path, number: int, image: Path | None, out_dir: Path) -> bool:
    """OCR one page, retried on its own; a page that keeps failing is recorded with its error."""
    attempts = settings.OCR_PAGE_ATTEMPTS
    error = ""
    for attempt in range(1, attempts + 1):
        try:
            if image is None or not image.exists():
                image = pdf.render_pages(path, number, number, settings.OCR_DPI, out_dir).get(number)
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
    """Save a page as read; refused (``RunSuperseded``) once this run's job was taken over by another worker."""
    with fenced():
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
    """Record a page that could not be read; fenced like ``_save_page``."""
    with fenced():
        DocumentPage.objects.filter(document=document, number=number).update(
            status=PageStatus.FAILED, error=error[:2000], attempts=attempts, updated_at=timezone.now()
        )
