"""What a documents job's page links to once it is done: the document's text and thumbnails."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from documents.models import Document, DocumentStatus
from jobs.models import Job, JobStatus
from tests.factories import DocumentFactory, UserFactory

pytestmark = pytest.mark.django_db


def _job(job_type: str, actor: str, owner: Any, status: str, **arguments: Any) -> Job:
    return Job.objects.create(
        type=job_type,
        queue="pdf-processing" if job_type == "pdf-ocr" else "thumbnails",
        actor=actor,
        owner=owner,
        status=status,
        arguments=arguments,
        finished_at=timezone.now() if status == JobStatus.COMPLETED else None,
    )


def _page_state(owner: Any, job: Job) -> dict[str, Any]:
    client = Client()
    client.force_login(owner)
    response = client.get(f"/jobs/{job.pk}/state")
    assert response.status_code == 200
    return dict(response.json())


def test_a_done_ocr_job_links_to_the_documents_text_and_thumbnails():
    # Given a document made ready by its OCR job, with two thumbnail sizes
    document: Any = DocumentFactory(status=DocumentStatus.READY, thumbnails={"400": "t/400.png", "128": "t/128.png"})
    job = _job("pdf-ocr", "ocr_document", document.owner, JobStatus.COMPLETED, document_id=str(document.id))
    Document.objects.filter(id=document.id).update(ocr_job=job)
    # When its owner's page asks what to show
    state = _page_state(document.owner, job)
    # Then it reads "Done" and links to the text and the thumbnails, smallest first
    assert (state["status_label"], state["may_cancel"]) == ("Done", False)
    assert state["result_links"] == [
        {"label": "Text of the document", "url": f"/api/documents/{document.id}/text"},
        {"label": "thumbnail 128 px", "url": f"/api/documents/{document.id}/thumbnails/128"},
        {"label": "thumbnail 400 px", "url": f"/api/documents/{document.id}/thumbnails/400"},
    ]


def test_an_unfinished_or_superseded_ocr_job_links_to_no_text():
    document: Any = DocumentFactory(status=DocumentStatus.PROCESSING)
    running = _job("pdf-ocr", "ocr_document", document.owner, JobStatus.ACTIVE, document_id=str(document.id))
    Document.objects.filter(id=document.id).update(ocr_job=running)
    state = _page_state(document.owner, running)
    assert (state["status_label"], state["may_cancel"], state["result_links"]) == ("Running", True, [])
    # A completed OCR job whose document a later job re-reads does not offer that job's text as its own
    older = _job("pdf-ocr", "ocr_document", document.owner, JobStatus.COMPLETED, document_id=str(document.id))
    assert _page_state(document.owner, older)["result_links"] == []


def test_a_done_thumbnails_job_links_to_its_documents_thumbnails():
    document: Any = DocumentFactory(original_name="invoice.pdf", thumbnails={"128": "t/128.png"})
    job = _job("thumbnails", "make_thumbnails", document.owner, JobStatus.COMPLETED, document_ids=[str(document.id)])
    assert _page_state(document.owner, job)["result_links"] == [
        {"label": "invoice.pdf: thumbnail 128 px", "url": f"/api/documents/{document.id}/thumbnails/128"}
    ]


def test_the_page_state_of_another_users_job_is_not_found():
    document: Any = DocumentFactory(status=DocumentStatus.READY)
    job = _job("pdf-ocr", "ocr_document", document.owner, JobStatus.COMPLETED, document_id=str(document.id))
    stranger = Client()
    stranger.force_login(UserFactory())
    assert stranger.get(f"/jobs/{job.pk}/state").status_code == 404
    assert Client().get(f"/jobs/{job.pk}/state").status_code == 302  # to sign in
