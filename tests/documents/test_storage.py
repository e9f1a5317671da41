"""Documents on S3-compatible storage: web host and workers share nothing but the bucket.

The web server (uvicorn, ASGI) and the worker pools each get their own empty
MEDIA_ROOT and the S3 variables: a file can only pass between them through
the bucket. The S3 server is moto's standalone server (``tests/s3_server.py``).
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import requests
from PIL import Image

from config.file_storage import default_file_storage
from documents.maintenance import documents_missing_thumbnails
from documents.models import Document, DocumentStatus
from jobs.models import Job, JobStatus
from tests.documents import pdfs
from tests.factories import UserFactory, api_token
from tests.jobs.helpers import wait_terminal
from tests.s3_server import S3Server
from tests.web_server import WebServer

#: Django's warning when it must buffer a synchronous streaming body under ASGI.
BUFFERED_UNDER_ASGI = "StreamingHttpResponse must consume synchronous iterators"


def files_under(*roots: Path) -> list[Path]:
    return [path for root in roots if root.exists() for path in root.rglob("*") if path.is_file()]


@pytest.mark.slow
def test_on_s3_an_upload_is_read_and_thumbnailed_by_workers_and_downloaded_from_the_web_host(
    pools, s3_bucket, user, scanned_pages, media_root, tmp_path
):
    # Given a web host and OCR and thumbnail workers that share only the S3 bucket
    web_media, worker_media = tmp_path / "web-media", tmp_path / "worker-media"
    worker_env = {**s3_bucket.env, "MEDIA_ROOT": str(worker_media), "OCR_DPI": "150"}
    pools("thumbnails", threads=2, env=worker_env)
    pools("pdf-processing", threads=2, env=worker_env)
    web = WebServer(env={**s3_bucket.env, "MEDIA_ROOT": str(web_media)}).start()
    try:
        api = requests.Session()
        api.headers["Authorization"] = f"Token {api_token(user)}"
        # A text page and a scanned page: tesseract reads the scan from the worker's local copy.
        data = pdfs.merge_pdfs(pdfs.text_pdf_bytes(["invoice amount customer payment"]), scanned_pages(1, words=8))

        # When a PDF is uploaded through the web host
        response = api.post(f"{web.url}/api/documents", files={"file": ("scan.pdf", data)}, timeout=30)
        assert response.status_code == 201, response.text
        document = Document.objects.get(id=response.json()["id"])
        # Then it is stored in the bucket under its generated name, byte for byte
        assert s3_bucket.read(document.file.name) == data

        # When its thumbnails (queued by the upload) and its OCR run on the workers
        thumbnails = wait_terminal(Job.objects.get(type="thumbnails"), timeout=60)
        ocr = api.post(f"{web.url}/api/jobs/pdf-ocr", json={"file_id": str(document.id)}, timeout=30)
        assert ocr.status_code == 202, ocr.text
        ocr_job = wait_terminal(Job.objects.get(id=ocr.json()["job_id"]), timeout=120)
        # Then both completed, the pages were read and the thumbnails are in the bucket and on the row
        assert thumbnails.status == JobStatus.COMPLETED, thumbnails.result
        assert ocr_job.status == JobStatus.COMPLETED, ocr_job.error_message
        document.refresh_from_db()
        assert document.status == DocumentStatus.READY
        assert document.thumbnail_sizes() == [150, 300, 600]
        stored = s3_bucket.objects()
        assert all(document.thumbnail_name(size) in stored for size in (150, 300, 600))
        text = api.get(f"{web.url}/api/documents/{document.id}/text", timeout=30).text
        assert "invoice" in text
        assert sum(word in text for word in pdfs.sample_words(8, seed=1)) >= 6, text

        # When the thumbnail and the file are downloaded from the web host
        image = api.get(f"{web.url}/api/documents/{document.id}/thumbnails/300", timeout=30)
        pdf = api.get(f"{web.url}/api/documents/{document.id}/file", timeout=30)
        # Then they stream out of the bucket with their headers
        assert image.status_code == 200 and image.headers["Content-Type"] == "image/png"
        assert max(Image.open(io.BytesIO(image.content)).size) == 300
        assert pdf.status_code == 200 and pdf.content == data
        assert pdf.headers["Content-Type"] == "application/pdf"
        assert pdf.headers["Content-Disposition"] == 'attachment; filename="scan.pdf"'
        assert pdf.headers["Content-Length"] == str(len(data))
        # And someone else gets 404
        other = requests.get(
            f"{web.url}/api/documents/{document.id}/file",
            headers={"Authorization": f"Token {api_token(UserFactory())}"},
            timeout=30,
        )
        assert other.status_code == 404
        # And the web host streamed without buffering, and no host kept a file on its own disk
        assert BUFFERED_UNDER_ASGI not in web.log()
        assert files_under(web_media, worker_media, media_root) == []
    finally:
        web.stop()


def test_maintenance_finds_missing_thumbnails_from_the_rows_without_asking_the_storage(
    settings, user, document_for, django_assert_num_queries
):
    # Given ready documents, one with every thumbnail recorded and one missing a size
    done = document_for(user, pdfs.text_pdf_bytes(["made"]), status=DocumentStatus.READY)
    partial = document_for(user, pdfs.text_pdf_bytes(["half made"]), status=DocumentStatus.READY)
    Document.record_thumbnails(str(done.id), {size: f"thumbnails/{done.id.hex}/{size}.png" for size in (150, 300)})
    Document.record_thumbnails(str(partial.id), {150: f"thumbnails/{partial.id.hex}/150.png"})
    # And a storage that fails any request: S3 at an address where nothing listens
    nowhere = S3Server().env("unreachable")  # a port taken and released: nothing listens there
    settings.STORAGES = {**settings.STORAGES, "default": default_file_storage(nowhere)}
    # When maintenance looks for documents missing a thumbnail
    with django_assert_num_queries(1):
        found = documents_missing_thumbnails([150, 300])
    # Then it answers from the rows alone, in one query
    assert [document.id for document in found] == [partial.id]
