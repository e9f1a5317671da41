"""PDF limits: the page cap, the text-layer cap, and pixel checks that fail closed."""

from __future__ import annotations

from pathlib import Path

import pytest

from documents import ocr, pdf
from documents.exceptions import TooManyPages
from documents.models import DocumentPage, DocumentStatus, PageStatus
from jobs.worker.isolation import ChildProcessFailed
from tests.documents import pdfs

pytestmark = pytest.mark.django_db


def _prepare(document, pages: int) -> None:
    DocumentPage.objects.bulk_create([DocumentPage(document=document, number=n) for n in range(1, pages + 1)])
    document.status = DocumentStatus.PROCESSING
    document.save()


def test_a_pdf_over_the_page_cap_is_refused_by_its_inspection(tmp_path: Path, settings):
    # Given a cap of three pages
    settings.DOCUMENT_MAX_PAGES = 3
    # Then a three-page PDF passes and a four-page one is refused, naming both counts
    assert pdf.inspect_pdf(pdfs.text_pdf(tmp_path / "three.pdf", ["a", "b", "c"])).pages == 3
    with pytest.raises(TooManyPages, match="the PDF has 4 pages; the limit is 3"):
        pdf.inspect_pdf(pdfs.text_pdf(tmp_path / "four.pdf", ["a", "b", "c", "d"]))


def test_ocr_refuses_a_stored_pdf_over_the_page_cap_before_creating_page_rows(user, document_for, settings):
    # Given a four-page document stored before the cap was lowered to three
    document = document_for(user, pdfs.text_pdf_bytes(["a", "b", "c", "d"]), pages=4)
    settings.DOCUMENT_MAX_PAGES = 3
    # When its OCR starts, then it is refused and no page row exists
    with pytest.raises(TooManyPages):
        ocr.start_document_ocr(str(document.id))
    assert not DocumentPage.objects.filter(document=document).exists()


def test_the_text_layer_of_each_page_is_cut_at_the_cap(tmp_path: Path, settings):
    # Given a 1 KB cap, and pages of 3,000 and 10 characters
    settings.OCR_TEXT_LAYER_MAX_KB = 1
    path = pdfs.text_pdf(tmp_path / "long.pdf", ["x" * 3000, "short page"])
    # When the text layer is read (in a child process)
    texts = pdf.text_layer(path, 1, 2)
    # Then the long page keeps its first KB and the short page is whole
    assert len(texts[1].encode()) == 1024
    assert texts[2].strip() == "short page"


def test_a_text_layer_that_pdftotext_cannot_read_is_a_child_failure(tmp_path: Path):
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4\nnothing else")
    with pytest.raises(ChildProcessFailed, match="pdftotext"):
        pdf.text_layer(broken, 1, 1)


def test_pdfimages_without_its_table_is_a_failure_not_an_empty_page(tmp_path: Path, monkeypatch):
    # Given a pdfimages that answers nothing (exit 0)
    monkeypatch.setattr(pdf, "_run", lambda args, **kwargs: b"")
    # Then no image list is made up from it
    with pytest.raises(ChildProcessFailed, match="without its list of images"):
        pdf.image_sizes(tmp_path / "any.pdf", 1, 1)


def test_pages_that_cannot_be_measured_are_refused_and_the_others_read(user, document_for, monkeypatch):
    # Given a three-page text-less document whose page 2 pdfimages cannot measure
    document = document_for(user, pdfs.text_pdf_bytes(["", "", ""]), pages=3)
    _prepare(document, 3)
    real = pdf.image_sizes

    def image_sizes(path, first, last):
        if first <= 2 <= last:
            raise ChildProcessFailed("pdfimages failed (exit 99): Syntax Error")
        return real(path, first, last)

    monkeypatch.setattr(ocr.pdf, "image_sizes", image_sizes)
    monkeypatch.setattr(ocr, "ocr_image", lambda image: ("read", 90.0))
    # When its pages are read
    ocr.ocr_page_range(str(document.id), 1, 3)
    # Then page 2 is refused with the reason and not rendered; pages 1 and 3 are read
    pages = {page.number: page for page in DocumentPage.objects.filter(document=document)}
    assert pages[2].status == PageStatus.FAILED
    assert "could not be checked before rendering" in pages[2].error and "exit 99" in pages[2].error
    assert pages[1].status == pages[3].status == PageStatus.DONE
