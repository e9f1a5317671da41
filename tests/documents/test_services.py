"""OCR and thumbnails as services, run in this process on generated PDFs (no broker)."""

from __future__ import annotations

import re
from collections import Counter

import pytest
from django.core.files.storage import default_storage
from PIL import Image

from documents import ocr, outcomes, thumbnails
from documents.exceptions import (
    CorruptPdf,
    DocumentError,
    EmptyFile,
    EncryptedPdf,
    NotAPdf,
    PdfHasNoPages,
)
from documents.models import DocumentPage, DocumentStatus, PageSource, PageStatus
from jobs.dispatch.outcomes import deliver_outcome
from jobs.models import Job
from jobs.state import transitions
from jobs.worker.isolation import ChildProcessFailed
from tests.documents import pdfs
from tests.jobs.helpers import start


def prepare(document, pages: int) -> None:
    """What the parent job does before fanning out: one pending row per page."""
    DocumentPage.objects.bulk_create([DocumentPage(document=document, number=n) for n in range(1, pages + 1)])
    document.status = DocumentStatus.PROCESSING
    document.save()


def words_of(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def test_ocr_reads_at_least_95_percent_of_the_words_of_a_clean_page(user, document_for, scanned_pages):
    # Given an image-only page with 48 known words
    document = document_for(user, scanned_pages(1, words=48))
    prepare(document, 1)
    # When its page range is read
    ocr.ocr_page_range(str(document.id), 1, 1)
    # Then OCR found at least 95 % of them
    page = DocumentPage.objects.get(document=document, number=1)
    expected = Counter(pdfs.sample_words(48, seed=1))
    found = Counter(words_of(page.text))
    assert sum((expected & found).values()) >= 0.95 * sum(expected.values())
    assert page.source == PageSource.OCR and page.status == PageStatus.DONE
    assert page.confidence is not None and page.confidence > 80


def test_a_page_with_a_text_layer_takes_its_text_from_it_without_ocr(user, document_for, monkeypatch):
    document = document_for(user, pdfs.text_pdf_bytes(["invoice amount customer payment delivery"]))
    prepare(document, 1)
    monkeypatch.setattr(ocr, "ocr_image", lambda image: pytest.fail("OCR ran on a text page"))
    ocr.ocr_page_range(str(document.id), 1, 1)
    page = DocumentPage.objects.get(document=document)
    assert page.text == "invoice amount customer payment delivery"
    assert page.source == PageSource.TEXT_LAYER
    assert page.confidence is None


@pytest.fixture
def flaky_page(monkeypatch):
    """Make OCR of one page fail ``times`` times (the others read normally); count every call."""
    calls: Counter[int] = Counter()

    def install(number: int, times: int) -> Counter[int]:
        real = ocr.ocr_image

        def flaky_ocr(image):
            page = int(image.stem.rsplit("-", 1)[1])
            calls[page] += 1
            if page == number and calls[page] <= times:
                raise ChildProcessFailed("tesseract failed (exit 1): injected")
            return real(image)

        monkeypatch.setattr(ocr, "ocr_image", flaky_ocr)
        return calls

    return install


def test_a_failing_page_is_retried_on_its_own(user, document_for, scanned_pages, flaky_page, settings):
    settings.OCR_DPI = 150
    document = document_for(user, scanned_pages(3, words=12), pages=3)
    prepare(document, 3)
    calls = flaky_page(2, times=2)
    ocr.ocr_page_range(str(document.id), 1, 3)
    assert calls == {1: 1, 2: 3, 3: 1}
    pages = {page.number: page for page in document.pages.all()}
    assert {page.status for page in pages.values()} == {PageStatus.DONE}
    assert (pages[1].attempts, pages[2].attempts, pages[3].attempts) == (1, 3, 1)


def test_a_page_that_keeps_failing_is_recorded_and_the_document_still_completes(
    user, document_for, scanned_pages, flaky_page, settings
):
    settings.OCR_DPI = 150
    document = document_for(user, scanned_pages(3, words=12), pages=3)
    prepare(document, 3)
    flaky_page(2, times=99)
    ocr.ocr_page_range(str(document.id), 1, 3)
    result = outcomes.finish_document_ocr(str(document.id), started_at=None)
    bad = DocumentPage.objects.get(document=document, number=2)
    assert bad.status == PageStatus.FAILED
    assert "failed 3 times" in bad.error and "injected" in bad.error
    assert result["failed_pages"] == 1 and result["ocr_pages"] == 2
    document.refresh_from_db()
    assert document.status == DocumentStatus.READY


def test_pages_already_read_are_not_read_again(user, document_for, scanned_pages, flaky_page, settings):
    # Given a page range whose first page was saved by an earlier, interrupted attempt
    settings.OCR_DPI = 150
    document = document_for(user, scanned_pages(2, words=12), pages=2)
    prepare(document, 2)
    DocumentPage.objects.filter(document=document, number=1).update(
        status=PageStatus.DONE, text="saved before", source=PageSource.OCR
    )
    calls = flaky_page(0, times=0)
    # When the range is run again
    ocr.ocr_page_range(str(document.id), 1, 2)
    # Then only the missing page was read
    assert calls == {2: 1}
    assert DocumentPage.objects.get(document=document, number=1).text == "saved before"


@pytest.mark.parametrize(
    ("data", "error", "problem"),
    [
        (b"", EmptyFile, "empty"),
        (pdfs.png_bytes(), NotAPdf, "not a PDF"),
        (pdfs.encrypted_pdf_bytes(), EncryptedPdf, "encrypted"),
        (b"%PDF-1.4\n garbage\n", CorruptPdf, "cannot be read"),
        (pdfs.text_pdf_bytes(["a complete page of text"])[:300], CorruptPdf, "cannot be read"),
        (pdfs.zero_page_pdf_bytes(), PdfHasNoPages, "no pages"),
    ],
    ids=["zero-bytes", "image-renamed-pdf", "encrypted", "corrupt", "truncated", "zero-pages"],
)
def test_unreadable_file_fails_the_ocr_job_permanently_and_its_hook_fails_the_document(
    user, document_for, data, error, problem
):
    # Given an OCR job for an unreadable file
    document = document_for(user, data)
    job = start("pdf-ocr", user, file_id=str(document.id))
    # When its run raises a permanent error (not retried: the job fails with it)
    with pytest.raises(error, match=problem) as raised:
        ocr.start_document_ocr(**job.arguments)
    assert transitions.mark_failed(str(job.id), f"{type(raised.value).__name__}: {raised.value}")
    assert deliver_outcome(str(job.id))
    # Then the type's on_failed hook failed the document with the reason
    document.refresh_from_db()
    assert document.status == DocumentStatus.FAILED
    assert document.error.startswith("OCR failed: ") and problem in document.error


def test_an_absurd_page_size_is_refused_before_rendering(user, document_for, monkeypatch):
    document = document_for(user, pdfs.text_pdf_bytes([""], media_box=(14400, 14400)))
    prepare(document, 1)
    monkeypatch.setattr(ocr.pdf, "render_pages", lambda *a: pytest.fail("rendered an absurd page"))
    ocr.ocr_page_range(str(document.id), 1, 1)
    with pytest.raises(DocumentError, match="no page could be read"):
        outcomes.finish_document_ocr(str(document.id), started_at=None)
    document.refresh_from_db()
    assert document.status == DocumentStatus.FAILED
    assert "14400 x 14400 pt" in document.error and "megapixel cap" in document.error


def test_a_decompression_bomb_is_refused_by_its_image_size(user, document_for, monkeypatch):
    document = document_for(user, pdfs.bomb_pdf_bytes(side=20000))
    prepare(document, 1)
    monkeypatch.setattr(ocr.pdf, "render_pages", lambda *a: pytest.fail("rendered a bomb"))
    ocr.ocr_page_range(str(document.id), 1, 1)
    page = DocumentPage.objects.get(document=document)
    assert page.status == PageStatus.FAILED
    assert "20000 x 20000 image" in page.error and "decompression bomb" in page.error


def test_a_render_over_its_cpu_limit_is_killed_and_recorded(user, document_for, settings):
    # Given the pixel cap does not catch it, the child's CPU limit still does
    settings.DOCUMENT_MAX_PAGE_PIXELS = 10**10
    settings.DOCUMENT_CHILD_CPU_S = 1
    settings.OCR_PAGE_ATTEMPTS = 1
    document = document_for(user, pdfs.bomb_pdf_bytes(side=20000))
    prepare(document, 1)
    ocr.ocr_page_range(str(document.id), 1, 1)
    page = DocumentPage.objects.get(document=document)
    assert page.status == PageStatus.FAILED
    assert "pdftoppm" in page.error and "1 s CPU limit" in page.error


@pytest.mark.parametrize(
    ("pending", "ranges"),
    [
        (300, [50, 50, 50, 40, 30, 20, 20, 10, 10, 10, 10]),
        (500, [50] * 7 + [40, 30, 20, 20, 10, 10, 10, 10]),
        (50, [20, 10, 10, 10]),
        (20, [10, 10]),
        (5, [5]),
    ],
)
def test_pages_are_split_into_ranges_that_shrink_to_one_batch(pending, ranges):
    split = ocr.split_page_ranges(list(range(1, pending + 1)), per_child=50, slots=2, batch=10)
    assert [len(run) for run in split] == ranges
    assert [n for run in split for n in run] == list(range(1, pending + 1))


def test_thumbnails_render_every_size_and_skip_those_that_exist(user, document_for, monkeypatch):
    document = document_for(user, pdfs.text_pdf_bytes(["a page"]))
    result = thumbnails.make_document_thumbnails(str(document.id), [150, 300, 600])
    assert result["made"] == [600, 300, 150]
    document.refresh_from_db()
    assert [max(Image.open(default_storage.open(document.thumbnail_name(size))).size) for size in (150, 300, 600)] == [
        150,
        300,
        600,
    ]
    renders = []
    real = thumbnails.pdf.render_first_page
    monkeypatch.setattr(thumbnails.pdf, "render_first_page", lambda *args: renders.append(args[1]) or real(*args))
    assert thumbnails.make_document_thumbnails(str(document.id), [150, 300, 600])["made"] == []
    assert thumbnails.make_document_thumbnails(str(document.id), [150, 1000])["made"] == [1000]
    assert thumbnails.make_document_thumbnails(str(document.id), [150], "webp", force=True)["made"] == [150]
    assert renders == [1000, 150]
    document.refresh_from_db()
    assert document.thumbnail_name(150) == f"thumbnails/{document.id.hex}/150.webp"
    # The PNG it replaced is deleted from the storage once the row names the WebP.
    assert not default_storage.exists(f"thumbnails/{document.id.hex}/150.png")


def test_thumbnails_of_a_broken_document_fail_permanently(user, document_for):
    document = document_for(user, b"%PDF-1.4\n garbage\n")
    with pytest.raises(CorruptPdf):
        thumbnails.make_document_thumbnails(str(document.id), [150])


def test_page_range_children_inherit_the_priority_of_the_ocr_request(user, document_for, scanned_pages):
    from jobs.core.context import RunningJob, set_current_job

    # Given a high-priority OCR job, running in this thread
    document = document_for(user, scanned_pages(1), pages=1)
    job = start("pdf-ocr", user, file_id=str(document.id), priority="high")
    assert transitions.claim(str(job.id), 0, "this-test")
    set_current_job(
        RunningJob(job_id=str(job.id), job_type="pdf-ocr", queue="pdf-processing", thread_id=0, time_limit_s=None)
    )
    try:
        # When it fans out (its actor is called with the job's arguments)
        marker = ocr.start_document_ocr(**job.arguments)
    finally:
        set_current_job(None)
    # Then the stages so far are recorded
    job.refresh_from_db()
    assert (job.progress, job.progress_data["message"]) == (10, "File loaded")
    # And its page-range children, inserted as the parent starts waiting (what the worker's
    # mirror does next), carry the same priority
    assert transitions.await_children(
        str(job.id), "this-test", marker.data["fanout"]["low"], marker.data, attempt=1, children=marker.jobs
    )
    children = Job.objects.filter(parent_id=job.id)
    assert [(child.priority, child.type, child.actor) for child in children] == [
        ("high", "pdf-ocr-pages", "ocr_page_range")
    ]
    assert marker.jobs[0].arguments == {"document_id": str(document.id), "first_page": 1, "last_page": 1}
    assert marker.data["total_pages"] == 1 and marker.data["pages_processed"] == 0
