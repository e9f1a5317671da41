"""Fencing of documents (issue 17): a run whose job was taken over saves no OCR page and records
no thumbnail, and the files it stored under its own per-run names are deleted."""

from __future__ import annotations

import pytest
from django.core.files.storage import default_storage

from documents import ocr, thumbnails
from documents.models import Document, DocumentPage, DocumentStatus, PageStatus
from jobs.core.exceptions import RunSuperseded
from jobs.state.fencing import Fence
from tests.documents import pdfs
from tests.fencing import HOLDER, STALE, running_as, taken_over

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _progress_kept_back(settings):
    """Progress reports stay pending (a throttle of an hour): the domain write is what meets the fence."""
    settings.JOBS_PROGRESS_MIN_INTERVAL_S = 3600


def _pending_pages(document, count):
    DocumentPage.objects.bulk_create([DocumentPage(document=document, number=n) for n in range(1, count + 1)])
    Document.objects.filter(id=document.id).update(status=DocumentStatus.PROCESSING)


def test_a_stale_run_saves_no_ocr_page(user, document_for):
    # Given a document of two text pages waiting to be read, and its page-range job held by attempt 2
    document = document_for(user, pdfs.text_pdf_bytes(["alpha bravo charlie delta", "echo foxtrot golf hotel"]), 2)
    _pending_pages(document, 2)
    job = taken_over("pdf-ocr-pages", "pdf-processing", "ocr_page_range", document_id=str(document.id))
    # When its stale attempt 1 reads the pages
    with running_as(job, *STALE), pytest.raises(RunSuperseded):
        ocr.ocr_page_range(str(document.id), 1, 2)
    # Then no page was saved: both still wait for the run that holds the job
    assert list(DocumentPage.objects.order_by("number").values_list("status", "text")) == [
        (PageStatus.PENDING, ""),
        (PageStatus.PENDING, ""),
    ]


def test_the_run_holding_its_job_saves_its_pages(user, document_for):
    document = document_for(user, pdfs.text_pdf_bytes(["alpha bravo charlie delta"]), 1)
    _pending_pages(document, 1)
    job = taken_over("pdf-ocr-pages", "pdf-processing", "ocr_page_range", document_id=str(document.id))
    with running_as(job, *HOLDER):
        assert ocr.ocr_page_range(str(document.id), 1, 1)["done"] == 1
    assert DocumentPage.objects.get().status == PageStatus.DONE


def test_a_stale_run_records_no_thumbnail_and_deletes_the_files_it_stored(user, document_for):
    # Given a document with a thumbnail recorded, and a thumbnails job held by attempt 2
    document = document_for(user, pdfs.text_pdf_bytes(["a page"]))
    Document.record_thumbnails(str(document.id), {150: "thumbnails/recorded/150.png"})
    job = taken_over("thumbnails-document", "thumbnails", "make_document_thumbnails", document_id=str(document.id))
    # When its stale attempt 1 renders them again
    with running_as(job, *STALE), pytest.raises(RunSuperseded):
        thumbnails.make_document_thumbnails(str(document.id), [150, 300], force=True)
    # Then the row still names the old thumbnail only, and nothing of that run is left in the storage
    document.refresh_from_db()
    assert document.thumbnails == {"150": "thumbnails/recorded/150.png"}
    _, stored = default_storage.listdir(f"thumbnails/{document.id.hex}")
    assert stored == []


def test_the_run_holding_its_job_records_thumbnails_named_for_its_attempt(user, document_for):
    document = document_for(user, pdfs.text_pdf_bytes(["a page"]))
    job = taken_over("thumbnails-document", "thumbnails", "make_document_thumbnails", document_id=str(document.id))
    with running_as(job, *HOLDER):
        assert thumbnails.make_document_thumbnails(str(document.id), [150])["made"] == [150]
    document.refresh_from_db()
    run = f"{str(job.id).replace('-', '')[:12]}-a2"
    assert document.thumbnail_name(150) == f"thumbnails/{document.id.hex}/150.{run}.png"
    assert default_storage.exists(document.thumbnail_name(150))


def test_thumbnail_names_differ_per_attempt(user, document_for):
    document = document_for(user, pdfs.text_pdf_bytes(["a page"]))
    job_id = "5efe8250-4a18-4749-83dc-7680ef668e04"
    names = {
        thumbnails.thumbnail_storage_name(document, 150, "png", Fence(job_id, 1, "old")),
        thumbnails.thumbnail_storage_name(document, 150, "png", Fence(job_id, 2, "new")),
        thumbnails.thumbnail_storage_name(document, 150, "png"),
    }
    assert len(names) == 3
