"""Security: an export never hands a spreadsheet a formula a tenant wrote (issue #16, point 5).

Against the real server (uvicorn) and a real ``csv-export`` worker: the
tenant signs in, uploads a document whose name is a formula, exports its
documents as CSV and as XLSX, and downloads both files.
"""

from __future__ import annotations

import csv
import io
import time
from typing import Any

import pytest
import requests
from openpyxl import load_workbook

from tests.documents.pdfs import text_pdf_bytes
from tests.factories import UserFactory
from tests.web_server import WebServer

#: The document name from the issue: Excel would run it as a live hyperlink to evil.test.
FORMULA_NAME = '=HYPERLINK("http:"&CHAR(47)&CHAR(47)&"evil.test","x").pdf'
PASSWORD = "secret-pass-123"  # noqa: S105 - the test user's password (tests/factories.py)


def _signed_in(server: WebServer, username: str) -> requests.Session:
    """A session carrying the API token that ``POST /api/auth/token`` hands out."""
    session = requests.Session()
    response = session.post(
        f"{server.url}/api/auth/token", json={"username": username, "password": PASSWORD}, timeout=30
    )
    assert response.status_code == 200, response.text
    session.headers["Authorization"] = f"Token {response.json()['token']}"
    return session


def _upload_named(session: requests.Session, server: WebServer, name: str, content: bytes) -> dict[str, Any]:
    """Upload a PDF under ``name`` exactly: the multipart body is written here, quotes escaped as Django reads them."""
    boundary = "conveyor-security-boundary"
    quoted = name.replace("\\", "\\\\").replace('"', '\\"')
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{quoted}"\r\n'
            "Content-Type: application/pdf\r\n\r\n"
        ).encode()
        + content
        + f"\r\n--{boundary}--\r\n".encode()
    )
    response = session.post(
        f"{server.url}/api/documents",
        data=body,
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return dict(response.json())


def _export_and_download(session: requests.Session, server: WebServer, export_format: str) -> bytes:
    """Ask for an export of the tenant's documents, wait for the worker to finish it, download the file."""
    response = session.post(
        f"{server.url}/api/jobs/csv-export",
        json={"query_params": {"dataset": "documents", "fields": ["name", "id"]}, "format": export_format},
        timeout=30,
    )
    assert response.status_code == 202, response.text
    status_url = response.json()["status_url"]
    deadline = time.monotonic() + 60
    while True:
        status = session.get(status_url, timeout=30).json()
        if status["status"] in ("completed", "failed", "cancelled"):
            break
        assert time.monotonic() < deadline, f"the export is still {status['status']} after 60 s"
        time.sleep(0.2)
    assert status["status"] == "completed", status
    download = session.get(f"{server.url}{status['data']['download_url']}", timeout=30)
    assert download.status_code == 200, download.text
    return download.content


@pytest.mark.slow
def test_an_exported_document_name_that_is_a_formula_reaches_the_spreadsheet_as_text(pools, web_server):
    # Given a tenant signed in through the API, and a csv-export worker
    pools("csv-export")
    tenant = UserFactory()
    session = _signed_in(web_server, tenant.username)
    # And a document uploaded under a name that is a spreadsheet formula
    document = _upload_named(session, web_server, FORMULA_NAME, text_pdf_bytes(["quarterly report"]))
    assert document["original_name"] == FORMULA_NAME

    # When the tenant exports their documents as CSV and as XLSX through the worker, and downloads both
    csv_file = _export_and_download(session, web_server, "csv")
    xlsx_file = _export_and_download(session, web_server, "xlsx")

    # Then the CSV cell starts with an apostrophe: a spreadsheet shows it as text, never runs it
    rows = list(csv.reader(io.StringIO(csv_file.decode("utf-8"), newline="")))
    assert rows[0] == ["name", "id"]
    assert rows[1] == ["'" + FORMULA_NAME, document["id"]]
    # And the XLSX cell is a string holding the name as it is, not a formula
    sheet = load_workbook(io.BytesIO(xlsx_file)).worksheets[0]
    cell = sheet.cell(row=2, column=1)
    assert cell.data_type == "s"
    assert cell.value == FORMULA_NAME
    assert sheet.cell(row=2, column=2).value == document["id"]
