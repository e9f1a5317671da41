"""OCR and thumbnails jobs on real worker processes, real Redis and PostgreSQL."""

from __future__ import annotations

import psutil
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from documents.models import Document, DocumentPage, DocumentStatus, PageSource, PageStatus
from jobs.dispatch.services import cancel_job
from jobs.models import Job, JobStatus
from tests.documents import pdfs
from tests.factories import UserFactory
from tests.jobs.helpers import canary, reload, start, wait_status, wait_terminal
from tests.workers import wait_for


def ocr_pool(pools, media_root, **env):
    return pools("pdf-processing", threads=2, env={"MEDIA_ROOT": str(media_root), **env})


TOOLS = ("tesseract", "pdftoppm")


def _is_isolation_child(process: psutil.Process) -> bool:
    """A ``run_in_child`` process: its parent is the worker's multiprocessing forkserver."""
    parent = process.parent()
    return parent is not None and any("multiprocessing.forkserver" in part for part in parent.cmdline())


def tools_under(pool) -> list[psutil.Process]:
    """pdftoppm / tesseract processes started by the pool's workers, and the isolation children
    (pdf2image and pytesseract run in one) that start them."""
    found = []
    for worker in pool.worker_processes():
        try:
            descendants = worker.children(recursive=True)
        except psutil.NoSuchProcess:
            continue
        for process in descendants:
            try:
                if process.name() in TOOLS or _is_isolation_child(process):
                    found.append(process)
            except psutil.NoSuchProcess:
                pass
    return found


def _name(process: psutil.Process) -> str:
    try:
        return process.name()
    except psutil.NoSuchProcess:
        return ""


def tesseract_in_its_child(pool) -> list[psutil.Process]:
    """The pool's tools, once they hold a tesseract whose parent is an isolation child."""
    tools = tools_under(pool)
    children = {p.pid for p in tools if _name(p) not in ("", *TOOLS)}
    for process in tools:
        try:
            if _name(process) == "tesseract" and process.ppid() in children:
                return tools
        except psutil.NoSuchProcess:
            pass
    return []


def running_tools(processes: list[psutil.Process]) -> list[psutil.Process]:
    alive = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                alive.append(process)
        except psutil.NoSuchProcess:
            pass
    return alive


def refreshed(document: Document) -> Document:
    document.refresh_from_db()
    return document


def watch_progress(job, seen: list[tuple[int, str]]):
    """A wait condition that records every (progress, message) of the job it sees."""

    def condition():
        row = reload(job)
        step = (row.progress, row.progress_data.get("message", ""))
        if not seen or seen[-1] != step:
            seen.append(step)
        return row.is_terminal

    return condition


@pytest.mark.slow
def test_ocr_job_reads_a_mixed_document_and_reports_its_stages(pools, user, document_for, scanned_pages, media_root):
    # Given a document with a text-layer page and three scanned pages
    data = pdfs.merge_pdfs(pdfs.text_pdf_bytes(["invoice amount customer payment delivery"]), scanned_pages(3))
    document = document_for(user, data, pages=4)
    ocr_pool(pools, media_root)
    # When OCR is requested
    job = start("pdf-ocr", user, file_id=str(document.id))
    seen: list[tuple[int, str]] = []
    wait_for(watch_progress(job, seen), timeout=120, interval=0.02, what="the OCR job to finish")
    # Then it completed, page by page, through the customer's stages
    assert job.status == JobStatus.COMPLETED, job.error_message
    assert job.result["pages"] == 4 and job.result["text_layer_pages"] == 1 and job.result["ocr_pages"] == 3
    assert job.progress_data["pages_processed"] == 4 and job.progress_data["total_pages"] == 4
    page_steps = [p for p, message in seen if message.startswith("Processing page ") and 20 < p < 90]
    assert page_steps, seen
    assert seen[-1][0] == 100
    document.refresh_from_db()
    assert document.status == DocumentStatus.READY
    assert list(document.pages.values_list("source", flat=True)) == [PageSource.TEXT_LAYER] + [PageSource.OCR] * 3


@pytest.mark.slow
def test_a_large_document_is_read_by_page_range_children_on_both_slots(
    pools, user, document_for, scanned_pages, media_root
):
    document = document_for(user, scanned_pages(4, words=12), pages=4)
    ocr_pool(pools, media_root, OCR_PAGES_PER_CHILD="2", OCR_DPI="150")
    job = wait_terminal(start("pdf-ocr", user, file_id=str(document.id)), timeout=120)
    assert job.status == JobStatus.COMPLETED, job.error_message
    children = list(Job.objects.filter(parent=job).order_by("created_at"))
    assert sorted((c.arguments["first_page"], c.arguments["last_page"]) for c in children) == [(1, 2), (3, 4)]
    assert {c.status for c in children} == {JobStatus.COMPLETED}
    # Both ranges ran at the same time, one per slot.
    first, second = sorted(children, key=lambda c: c.started_at)
    assert second.started_at < first.finished_at
    assert set(DocumentPage.objects.filter(document=document).values_list("status", flat=True)) == {PageStatus.DONE}


@pytest.mark.slow
def test_cancelling_ocr_kills_its_tesseract_and_the_worker_stays_healthy(
    pools, user, document_for, scanned_pages, media_root
):
    document = document_for(user, scanned_pages(8), pages=8)
    pool = ocr_pool(pools, media_root)
    job = start("pdf-ocr", user, file_id=str(document.id))
    # (tesseract runs under pytesseract in an isolation child: the kill must take both)
    tools = wait_for(lambda: tesseract_in_its_child(pool), timeout=60, what="tesseract in its isolation child")
    cancel_job(reload(job))
    assert reload(job).status == JobStatus.CANCELLED
    wait_for(lambda: running_tools(tools) == [], timeout=10, what="kill")
    wait_for(lambda: tools_under(pool) == [], timeout=10, what="no pdftoppm or tesseract left")
    for child in Job.objects.filter(parent=job):
        wait_terminal(child, timeout=20)
        assert child.status == JobStatus.CANCELLED
    # And the worker goes on with the next job
    assert wait_terminal(canary(queue="pdf-processing"), timeout=20).status == JobStatus.COMPLETED
    # And the type's on_cancelled hook says so on the document
    wait_for(lambda: refreshed(document).status == DocumentStatus.FAILED, timeout=10, what="the document failed")
    assert document.error == "OCR cancelled"


@pytest.mark.slow
def test_an_ocr_job_that_fails_for_good_fails_its_document_with_the_reason(pools, user, document_for, media_root):
    # Given a document whose stored file cannot be read
    document = document_for(user, b"%PDF-1.4\n garbage\n")
    ocr_pool(pools, media_root)
    # When its OCR job meets that permanent error
    job = wait_terminal(start("pdf-ocr", user, file_id=str(document.id)), timeout=60)
    # Then the job failed without a retry
    assert (job.status, job.attempts) == (JobStatus.FAILED, 1)
    assert "cannot be read" in job.error_message
    # And its on_failed hook (run by the worker after the commit) failed the document with a readable reason
    wait_for(lambda: refreshed(document).status == DocumentStatus.FAILED, timeout=10, what="the document failed")
    assert document.error == f"OCR failed: {job.error_message}"
    assert document.ocr_job_id == job.id


@pytest.mark.slow
def test_a_page_range_over_the_time_limit_is_killed_with_its_child_processes(
    pools, user, document_for, scanned_pages, media_root
):
    document = document_for(user, scanned_pages(8), pages=8)
    pool = ocr_pool(pools, media_root, QUEUE_PDF_PROCESSING_TIME_LIMIT="3", OCR_PAGES_PER_CHILD="8")
    job = start("pdf-ocr", user, file_id=str(document.id))
    # (the limit may strike while pdftoppm renders or while tesseract reads)
    tools = wait_for(lambda: tools_under(pool), timeout=60, what="pdftoppm or tesseract")
    wait_terminal(job, timeout=60)
    child = Job.objects.get(parent=job)
    assert child.status == JobStatus.FAILED
    assert "timed out after 3 s" in child.error_message
    assert child.attempts == 1
    assert running_tools(tools) == []
    assert tools_under(pool) == []
    # The pages read before the limit are kept; the others carry the reason.
    failed = DocumentPage.objects.filter(document=document, status=PageStatus.FAILED)
    assert failed.exists()
    assert "timed out" in failed.first().error
    assert wait_terminal(canary(queue="pdf-processing"), timeout=20).status == JobStatus.COMPLETED


@pytest.mark.slow
def test_thumbnails_job_counts_documents_and_keeps_a_broken_one_to_itself(pools, user, document_for, media_root):
    good = [document_for(user, pdfs.text_pdf_bytes([f"page {n}"])) for n in range(2)]
    broken = document_for(user, b"%PDF-1.4\n garbage\n")
    pools("thumbnails", threads=4, env={"MEDIA_ROOT": str(media_root)})
    ids = [str(good[0].id), str(broken.id), str(good[1].id)]
    job = wait_terminal(start("thumbnails", user, document_ids=ids, sizes=[150, 300]), timeout=60)
    assert job.status == JobStatus.COMPLETED, job.error_message
    assert job.progress_data["message"] == "3 of 3 documents"
    assert job.result["completed"] == 2 and job.result["failed"] == 1
    assert "cannot be read" in job.result["errors"][str(broken.id)]
    assert Job.objects.get(parent=job, arguments__document_id=str(broken.id)).attempts == 1
    for document in good:
        document.refresh_from_db()  # (thumbnails are recorded on the row)
        assert document.thumbnail_sizes() == [150, 300]


@pytest.mark.slow
def test_an_upload_gets_its_thumbnails_in_the_background(pools, user_api, media_root):
    pools("thumbnails", threads=2, env={"MEDIA_ROOT": str(media_root)})
    data = pdfs.text_pdf_bytes(["hello thumbnails"])
    response = user_api.post("/api/documents", {"file": SimpleUploadedFile("a.pdf", data)}, format="multipart")
    assert response.status_code == 201
    wait_status(Job.objects.get(type="thumbnails"), JobStatus.COMPLETED, timeout=60)
    detail = user_api.get(f"/api/documents/{response.json()['id']}").json()
    assert sorted(detail["thumbnails"], key=int) == ["150", "300", "600"]
    image = user_api.get(f"/api/documents/{response.json()['id']}/thumbnails/600")
    assert image.status_code == 200 and image["Content-Type"] == "image/png"


@pytest.mark.slow
def test_a_page_range_lets_another_customers_waiting_ocr_in_between_its_batches(
    pools, user, document_for, scanned_pages, media_root
):
    # Given customer A's twelve-page scan on a single slot (its first range: pages 1-3, rendered as one batch)
    pools(
        "pdf-processing",
        threads=1,
        env={"MEDIA_ROOT": str(media_root), "OCR_BATCH_PAGES": "3", "OCR_DPI": "150"},
    )
    big = document_for(user, scanned_pages(12), pages=12)
    a_job = start("pdf-ocr", user, file_id=str(big.id))
    first_range = wait_for(
        lambda: Job.objects.filter(parent=a_job, status=JobStatus.ACTIVE, arguments__first_page=1).first(),
        timeout=60,
        what="A's first range running",
    )
    assert first_range.arguments["last_page"] == 3
    # When customer B asks for a one-page document's OCR while that range runs
    other = UserFactory()
    small = document_for(other, scanned_pages(1), pages=1)
    b_job = start("pdf-ocr", other, file_id=str(small.id))
    # Then B's document is read before A's range ends: the range handed its rest back after a page
    assert wait_terminal(b_job, timeout=120).status == JobStatus.COMPLETED
    assert wait_terminal(a_job, timeout=180).status == JobStatus.COMPLETED
    first_range = reload(first_range)
    assert first_range.finished_at > reload(b_job).finished_at
    # A yield is not an attempt, and the range's last run read only what was left
    assert first_range.status == JobStatus.COMPLETED and first_range.attempts == 1
    assert first_range.result["pages"] < 3
    # Every page of A's document was read once
    pages = DocumentPage.objects.filter(document=big)
    assert set(pages.values_list("status", flat=True)) == {PageStatus.DONE}
    assert set(pages.values_list("attempts", flat=True)) == {1}
