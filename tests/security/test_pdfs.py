"""Security: hostile PDFs meet limits, through the real server (uvicorn) and real workers (issue #16, point 6).

- a PDF over ``DOCUMENT_MAX_PAGES`` is refused at upload, before any row or stored file;
- a page whose images cannot be measured (pdfimages fails) is not rendered: the check fails closed;
- a text layer blown up by a crafted font (one glyph, sixty characters) is cut per page;
- the document detail lists its first pages and links to the rest, a page at a time.
"""

from __future__ import annotations

import os
import time
from typing import Any

import pytest
import requests

from documents.models import Document, DocumentPage, DocumentStatus, PageStatus
from tests.documents import pdfs
from tests.factories import UserFactory
from tests.web_server import WebServer

PASSWORD = "secret-pass-123"  # noqa: S105 - the test user's password (tests/factories.py)


def _signed_in(server: WebServer) -> tuple[Any, requests.Session]:
    """A new tenant and a session carrying the API token that ``POST /api/auth/token`` hands out."""
    tenant = UserFactory()
    session = requests.Session()
    response = session.post(
        f"{server.url}/api/auth/token", json={"username": str(tenant.username), "password": PASSWORD}, timeout=30
    )
    assert response.status_code == 200, response.text
    session.headers["Authorization"] = f"Token {response.json()['token']}"
    return tenant, session


def _upload(session: requests.Session, server: WebServer, content: bytes) -> requests.Response:
    return session.post(f"{server.url}/api/documents", files={"file": ("doc.pdf", content)}, timeout=60)


def _ocr(session: requests.Session, server: WebServer, document_id: str, timeout: float = 120) -> dict[str, Any]:
    """Start OCR through the API and poll the job's status until it ends."""
    response = session.post(f"{server.url}/api/jobs/pdf-ocr", json={"file_id": document_id}, timeout=30)
    assert response.status_code == 202, response.text
    status_url = response.json()["status_url"]
    deadline = time.monotonic() + timeout
    while True:
        status = dict(session.get(status_url, timeout=30).json())
        if status["status"] in ("completed", "failed", "cancelled"):
            return status
        assert time.monotonic() < deadline, f"OCR is still {status['status']} after {timeout} s"
        time.sleep(0.2)


def _pages_pdf(count: int) -> bytes:
    """``count`` empty Letter pages sharing one content stream: small, however many pages."""
    kids = " ".join(f"{4 + index} 0 R" for index in range(count)).encode()
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>" % count,
        b"<< /Length 0 >>\nstream\n\nendstream",
    ]
    objects += [b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 3 0 R >>"] * count
    return pdfs._pdf(objects)


def _expanding_font_pdf(glyphs: int, expansion: int) -> bytes:
    """One page showing ``glyphs`` times a glyph whose ToUnicode map makes it ``expansion`` characters.

    The page's PDF is ~1 byte per glyph; pdftotext's text of it is
    ``glyphs * expansion`` bytes (poppler caps a page at 50,000 glyphs, not
    characters).
    """
    cmap = (
        b"/CIDInit /ProcSet findresource begin 12 dict begin begincmap /CMapName /Expand def "
        b"1 begincodespacerange <00> <FF> endcodespacerange "
        b"1 beginbfchar <41> <" + b"0058" * expansion + b"> endbfchar endcmap "
        b"CMapName currentdict /CMap defineresource pop end end"
    )
    per_line = 1000
    lines = [b"1 0 0 1 10 %d Tm (%s) Tj" % (1990 - index * 2, b"A" * per_line) for index in range(glyphs // per_line)]
    content = b"BT /F1 1 Tf\n" + b"\n".join(lines) + b"\nET"
    return pdfs._pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 2000 2000] "
            b"/Resources << /Font << /F1 5 0 R >> >> /Contents 4 0 R >>",
            b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
            b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /ToUnicode 6 0 R >>",
            b"<< /Length %d >>\nstream\n" % len(cmap) + cmap + b"\nendstream",
        ]
    )


@pytest.mark.slow
def test_a_pdf_over_the_page_cap_is_refused_at_upload_with_a_400_naming_file(web_server):
    # Given a tenant, and a 180 KB PDF of 2,001 pages (the default cap is 2,000)
    _, session = _signed_in(web_server)
    content = _pages_pdf(2001)
    # When it is uploaded
    response = _upload(session, web_server, content)
    # Then it is refused with a 400 that names the field and the limit, and nothing is kept
    assert response.status_code == 400, response.text
    errors = response.json()["errors"]
    assert list(errors) == ["file"]
    assert "2001 pages" in errors["file"][0] and "2000" in errors["file"][0]
    assert not Document.objects.exists()
    # And a PDF at the cap is accepted
    assert _upload(session, web_server, _pages_pdf(2000)).status_code == 201


@pytest.mark.slow
def test_a_page_whose_images_cannot_be_measured_is_not_rendered(pools, web_server, tmp_path):
    # Given an OCR worker on which pdfimages fails, as it does on a PDF that breaks or outgrows it
    tools = tmp_path / "bin"
    tools.mkdir()
    broken = tools / "pdfimages"
    broken.write_text("#!/bin/sh\necho 'Syntax Error: pdfimages cannot read this file' >&2\nexit 99\n")
    broken.chmod(0o755)
    pools("pdf-processing", env={"PATH": f"{tools}:{os.environ['PATH']}", "OCR_DPI": "150"})
    # And a tenant's scanned page (no text layer: it must be rendered to be read)
    _, session = _signed_in(web_server)
    scan = pdfs.image_pdf(tmp_path / "scan.pdf", [pdfs.sample_words(8, seed=1)])
    upload = _upload(session, web_server, scan.read_bytes())
    assert upload.status_code == 201, upload.text
    document_id = upload.json()["id"]

    # When the tenant asks for its OCR
    status = _ocr(session, web_server, document_id)

    # Then the page was refused with a reason naming the failed check, not rendered and read
    page = DocumentPage.objects.get(document_id=document_id, number=1)
    assert page.status == PageStatus.FAILED, page.text
    assert "could not be checked before rendering" in page.error and "pdfimages" in page.error
    assert page.text == ""
    # And the document failed with that readable reason
    assert status["status"] == "failed"
    document = session.get(f"{web_server.url}/api/documents/{document_id}", timeout=30).json()
    assert document["status"] == DocumentStatus.FAILED
    assert "could not be checked before rendering" in document["error"]


@pytest.mark.slow
def test_a_text_layer_blown_up_by_its_font_is_cut_per_page(pools, web_server):
    # Given an OCR worker with the default text-layer cap (64 KB a page)
    pools("pdf-processing")
    _, session = _signed_in(web_server)
    # And a 12 KB PDF page whose text layer is 600 KB (each glyph maps to sixty characters)
    content = _expanding_font_pdf(glyphs=10_000, expansion=60)
    assert len(content) < 20_000
    upload = _upload(session, web_server, content)
    assert upload.status_code == 201, upload.text
    document_id = upload.json()["id"]

    # When it is read
    status = _ocr(session, web_server, document_id)

    # Then the page's text is its first 64 KB, taken from the text layer
    assert status["status"] == "completed", status
    text = session.get(f"{web_server.url}/api/documents/{document_id}/text", timeout=30)
    assert text.status_code == 200
    assert 60_000 < len(text.content) <= 64 * 1024
    assert set(text.text) <= {"X", "\n"}
    page = session.get(f"{web_server.url}/api/documents/{document_id}/pages", timeout=30).json()["results"][0]
    assert page["status"] == "done" and page["source"] == "text-layer"


@pytest.mark.slow
def test_the_document_detail_lists_its_first_pages_and_pages_through_the_rest(web_server):
    # Given a tenant's document of 120 read pages
    tenant, session = _signed_in(web_server)
    document = Document.objects.create(owner=tenant, original_name="big.pdf", size=1, page_count=120)
    DocumentPage.objects.bulk_create(
        DocumentPage(document=document, number=number, status=PageStatus.DONE, text=f"page {number}")
        for number in range(1, 121)
    )
    # When the tenant reads the document's detail
    detail = session.get(f"{web_server.url}/api/documents/{document.id}", timeout=30)
    # Then it lists the first 50 pages and links to every page
    assert detail.status_code == 200
    body = detail.json()
    assert [page["number"] for page in body["pages"]] == list(range(1, 51))
    assert body["pages_url"] == f"{web_server.url}/api/documents/{document.id}/pages"
    # And that list goes through them all, 50 at a time, in order
    numbers: list[int] = []
    url: str | None = body["pages_url"]
    while url:
        listing = session.get(url, timeout=30).json()
        assert listing["count"] == 120 and len(listing["results"]) <= 50
        numbers += [page["number"] for page in listing["results"]]
        url = listing["next"]
    assert numbers == list(range(1, 121))
    # And another tenant gets 404 for the list
    _, stranger = _signed_in(web_server)
    assert stranger.get(body["pages_url"], timeout=30).status_code == 404
