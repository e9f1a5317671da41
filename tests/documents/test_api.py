"""The documents API: upload checked by content, ownership answered with 404, OCR requests."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from documents.models import Document, DocumentPage, DocumentStatus, PageStatus
from jobs.models import Job, JobStatus
from tests.documents import pdfs


def upload(client: APIClient, data: bytes, name: str = "report.pdf"):
    return client.post("/api/documents", {"file": SimpleUploadedFile(name, data)}, format="multipart")


def test_upload_stores_the_pdf_under_a_generated_name(user_api, user, media_root):
    data = pdfs.text_pdf_bytes(["first page words", "second page words"])
    response = upload(user_api, data, name="../../etc/passwd.pdf")
    assert response.status_code == 201, response.content
    document = Document.objects.get(id=response.json()["id"])
    assert document.owner == user
    assert document.original_name == "passwd.pdf"
    assert document.size == len(data)
    assert document.sha256 == hashlib.sha256(data).hexdigest()
    assert document.page_count == 2
    assert document.status == DocumentStatus.UPLOADED
    stored = Path(document.file.path)
    assert stored.read_bytes() == data
    assert stored.is_relative_to(media_root)
    assert stored.name == f"{document.id.hex}.pdf"
    assert "file" not in response.json()


def test_upload_queues_a_thumbnails_job_for_the_document(user_api, user):
    response = upload(user_api, pdfs.text_pdf_bytes(["some words on a page"]))
    job = Job.objects.get(type="thumbnails")
    assert job.owner == user
    assert job.queue == "thumbnails"
    assert job.arguments["document_ids"] == [response.json()["id"]]
    assert job.arguments["sizes"] == [150, 300, 600]


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (pdfs.png_bytes(), "not a PDF"),
        (b"", "empty"),
        (pdfs.encrypted_pdf_bytes(), "encrypted"),
        (b"%PDF-1.4\n garbage that is no PDF\n", "cannot be read"),
        (pdfs.text_pdf_bytes(["a complete page of text"])[:300], "cannot be read"),
        (pdfs.zero_page_pdf_bytes(), "no pages"),
    ],
    ids=["image-renamed-pdf", "zero-bytes", "encrypted", "corrupt", "truncated", "zero-pages"],
)
def test_upload_rejects_what_is_not_a_readable_pdf_with_a_clear_400(user_api, data, problem):
    response = upload(user_api, data)
    assert response.status_code == 400
    assert problem in response.json()["errors"]["file"][0]
    assert not Document.objects.exists()
    assert not Job.objects.exists()


def test_upload_over_the_size_limit_answers_413(user_api, settings):
    settings.DOCUMENT_MAX_UPLOAD_BYTES = 500
    response = upload(user_api, pdfs.text_pdf_bytes(["x" * 2000]))
    assert response.status_code == 413
    assert "limit" in response.json()["detail"]
    assert not Document.objects.exists()


def test_upload_without_a_file_field_names_the_field(user_api):
    response = user_api.post("/api/documents", {"other": "x"}, format="multipart")
    assert response.status_code == 400
    assert "file" in response.json()["errors"]


@pytest.mark.parametrize("suffix", ["", "/text", "/thumbnails/150"])
def test_someone_elses_document_answers_404(user_api, other_user, document_for, suffix):
    document = document_for(other_user, pdfs.text_pdf_bytes(["private words here"]))
    response = user_api.get(f"/api/documents/{document.id}{suffix}")
    assert response.status_code == 404


def test_staff_see_any_document(staff_api, other_user, document_for):
    document = document_for(other_user, pdfs.text_pdf_bytes(["private words here"]))
    response = staff_api.get(f"/api/documents/{document.id}")
    assert response.status_code == 200
    assert response.json()["page_count"] == 1


def test_list_shows_only_your_documents(user_api, user, other_user, document_for):
    mine = document_for(user, pdfs.text_pdf_bytes(["mine"]))
    document_for(other_user, pdfs.text_pdf_bytes(["theirs"]))
    response = user_api.get("/api/documents")
    assert [row["id"] for row in response.json()["results"]] == [str(mine.id)]


def test_text_is_plain_with_pages_separated_by_form_feeds(user_api, user, document_for):
    document = document_for(user, pdfs.text_pdf_bytes(["a", "b"]), pages=2, status=DocumentStatus.READY)
    DocumentPage.objects.create(document=document, number=2, text="second", status=PageStatus.DONE)
    DocumentPage.objects.create(document=document, number=1, text="first", status=PageStatus.DONE)
    response = user_api.get(f"/api/documents/{document.id}/text")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert response.content.decode() == "first\fsecond"


def test_text_of_a_document_not_ready_answers_409(user_api, user, document_for):
    document = document_for(user, pdfs.text_pdf_bytes(["a"]))
    assert user_api.get(f"/api/documents/{document.id}/text").status_code == 409


def test_detail_lists_thumbnail_urls_and_serves_the_image(user_api, user, document_for):
    from PIL import Image

    document = document_for(user, pdfs.text_pdf_bytes(["a"]))
    image = io.BytesIO()
    Image.new("RGB", (10, 12), "white").save(image, format="PNG")
    name = default_storage.save(f"thumbnails/{document.id.hex}/150.png", ContentFile(image.getvalue()))
    Document.record_thumbnails(str(document.id), {150: name})
    detail = user_api.get(f"/api/documents/{document.id}").json()
    assert list(detail["thumbnails"]) == ["150"]
    response = user_api.get(f"/api/documents/{document.id}/thumbnails/150")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    assert Image.open(io.BytesIO(b"".join(response.streaming_content))).size == (10, 12)
    assert user_api.get(f"/api/documents/{document.id}/thumbnails/300").status_code == 404


def test_ocr_request_answers_202_with_an_estimate_from_the_page_count(user_api, user, document_for):
    document = document_for(user, pdfs.text_pdf_bytes(["a"]), pages=160)
    response = user_api.post("/api/jobs/pdf-ocr", {"file_id": str(document.id)}, format="json")
    assert response.status_code == 202
    body = response.json()
    job = Job.objects.get(id=body["job_id"])
    assert job.queue == "pdf-processing"
    assert job.arguments == {"document_id": str(document.id)}
    # 160 pages at the default 40 pages/min per slot on two slots: two minutes.
    assert body["estimated_duration_s"] == 120.0
    assert body["estimated_duration"] == "1-3 minutes"
    document.refresh_from_db()
    assert document.ocr_job_id == job.id
    assert document.status == DocumentStatus.PROCESSING


def test_ocr_estimate_follows_the_measured_speed_of_recent_jobs(user_api, user, document_for):
    Job.objects.create(
        type="pdf-ocr",
        queue="pdf-processing",
        actor="ocr_document",
        status=JobStatus.COMPLETED,
        result={"pages": 100, "seconds": 300.0},
    )
    document = document_for(user, pdfs.text_pdf_bytes(["a"]), pages=40)
    body = user_api.post("/api/jobs/pdf-ocr", {"file_id": str(document.id)}, format="json").json()
    # 20 pages/min measured: 40 pages take two minutes.
    assert body["estimated_duration_s"] == 120.0


def test_duplicate_ocr_request_answers_with_the_running_job(user_api, user, document_for):
    document = document_for(user, pdfs.text_pdf_bytes(["a"]))
    first = user_api.post("/api/jobs/pdf-ocr", {"file_id": str(document.id)}, format="json").json()
    second = user_api.post("/api/jobs/pdf-ocr", {"file_id": str(document.id)}, format="json").json()
    assert second["job_id"] == first["job_id"]
    assert second["created"] is False
    assert Job.objects.filter(type="pdf-ocr").count() == 1


def test_high_priority_ocr_request_records_its_priority(user_api, user, document_for):
    # (a tenant needs the permission: tests/security/test_priority.py)
    user.user_permissions.add(Permission.objects.get(codename="set_high_priority"))
    document = document_for(user, pdfs.text_pdf_bytes(["a"]))
    body = user_api.post("/api/jobs/pdf-ocr", {"file_id": str(document.id), "priority": "high"}, format="json").json()
    job = Job.objects.get(id=body["job_id"])
    # (the arguments carry it to the page-range children)
    assert job.priority == "high"


@pytest.mark.parametrize("whose", ["someone-else", "nobody"])
def test_ocr_request_for_a_document_you_cannot_see_is_404(user_api, other_user, document_for, whose):
    import uuid

    file_id = document_for(other_user, b"%PDF-1.4\n").id if whose == "someone-else" else uuid.uuid4()
    response = user_api.post("/api/jobs/pdf-ocr", {"file_id": str(file_id)}, format="json")
    assert response.status_code == 404
    assert not Job.objects.filter(type="pdf-ocr").exists()


def test_thumbnails_request_for_someone_elses_document_is_404(user_api, user, other_user, document_for):
    mine = document_for(user, b"%PDF-1.4\n")
    theirs = document_for(other_user, b"%PDF-1.4\n")
    response = user_api.post("/api/jobs/thumbnails", {"document_ids": [str(mine.id), str(theirs.id)]}, format="json")
    assert response.status_code == 404
    assert str(theirs.id) in response.json()["detail"]


def test_thumbnails_request_starts_one_parent_job(user_api, user, document_for):
    documents = [document_for(user, b"%PDF-1.4\n") for _ in range(3)]
    response = user_api.post(
        "/api/jobs/thumbnails",
        {
            "document_ids": [str(d.id) for d in documents],
            "sizes": [300, 150],
            "format": "webp",
            "force": True,
        },
        format="json",
    )
    assert response.status_code == 202
    job = Job.objects.get(id=response.json()["job_id"])
    assert job.arguments == {
        "document_ids": [str(d.id) for d in documents],
        "sizes": [150, 300],
        "image_format": "webp",
        "force": True,
    }
