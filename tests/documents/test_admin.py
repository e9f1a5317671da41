"""Documents in the admin: the status is the document's own, the OCR job a link by its id."""

from __future__ import annotations

from django.urls import reverse

from documents.models import DocumentStatus
from tests.documents import pdfs
from tests.factories import UserFactory
from tests.jobs.helpers import start


def test_a_document_page_shows_its_own_status_and_links_its_ocr_job(client, user, document_for):
    # Given a document whose OCR job is running, and staff in the admin
    document = document_for(user, pdfs.text_pdf_bytes(["a page"]))
    job = start("pdf-ocr", user, file_id=str(document.id))
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    # When they open the document and the list
    page = client.get(reverse("admin:documents_document_change", args=[document.id])).content.decode()
    listing = client.get(reverse("admin:documents_document_changelist")).content.decode()
    # Then the page shows the document's status and links the job by its id
    assert DocumentStatus.PROCESSING.label in page
    assert f'href="{reverse("admin:jobs_job_change", args=[job.id])}">{job.id}</a>' in page
    # And the list draws the status as a badge
    assert f">{DocumentStatus.PROCESSING.label}</span>" in listing and 'class="status-badge"' in listing
