"""Security: request bodies are capped before they are read (issue #16, point 2).

Against the real server (uvicorn, the command ``make run`` starts). The
attacks talk raw HTTP over a socket: they send the headers and a few bytes
(or a chunked body just over the cap) and then wait for the answer without
sending the rest, as an attacker who never finishes would. Before the cap,
Django's ASGI handler read (and spooled to ``/tmp``) the whole body before
routing, so no answer ever came.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests
from django.conf import settings

from tests.documents.pdfs import text_pdf_bytes
from tests.factories import UserFactory, api_token
from tests.web_server import WebServer

pytestmark = pytest.mark.slow

#: The issue's default cap of a body that is not an upload (``REQUEST_MAX_BODY_MB`` = 1).
DEFAULT_CAP_BYTES = 1024 * 1024
#: How long the attacker waits for the refusal; the issue's "promptly" (without the cap: never).
ANSWER_WITHIN_S = 5.0
#: Multipart framing allowed on top of ``DOCUMENT_MAX_UPLOAD_BYTES`` (documents/api/views.py).
MULTIPART_SLACK_BYTES = 64 * 1024


@pytest.fixture(scope="module")
def server(django_db_setup: None, django_db_blocker: Any) -> Iterator[WebServer]:
    """One real uvicorn for this module's attacks, on the test database (a test that writes rows is transactional)."""
    with django_db_blocker.unblock():
        web = WebServer().start()
    yield web
    web.stop()


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def _connect(server: WebServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=ANSWER_WITHIN_S)
    sock.settimeout(ANSWER_WITHIN_S)
    return sock


def _head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{name}: {value}" for name, value in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _read_answer(sock: socket.socket) -> Answer:
    """The response on ``sock``; fails the test if none comes within ``ANSWER_WITHIN_S``."""
    received = b""
    try:
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        head, _, body = received.partition(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        headers = {name.strip().lower(): value.strip() for name, _, value in (h.partition(":") for h in header_lines)}
        length = int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    except TimeoutError:
        raise AssertionError(
            f"no answer within {ANSWER_WITHIN_S} s: the server is still reading the body (got {received[:200]!r})"
        ) from None
    assert status_line.startswith("HTTP/1.1 "), received[:200]
    return Answer(status=int(status_line.split()[1]), headers=headers, body=body)


def test_a_body_announcing_2_gb_to_the_token_endpoint_answers_413_without_being_read(server):
    # Given an outsider, not signed in, who announces a 2 GB JSON body to the token endpoint
    with _connect(server) as sock:
        head = {"Content-Type": "application/json", "Content-Length": str(2 * 1024**3)}
        sock.sendall(_head("POST", "/api/auth/token", head) + b'{"username": "admin", "pass')

        # When it has sent only the headers and a few bytes
        answer = _read_answer(sock)

    # Then the server answers 413 at once, as JSON, and closes the connection
    assert answer.status == 413, answer.body
    assert answer.headers["content-type"] == "application/json"
    assert "1 MB" in answer.json()["detail"]
    assert answer.headers.get("connection") == "close"


def test_a_chunked_body_is_cut_off_with_413_once_it_passes_the_cap(server):
    # Given a chunked body to the token endpoint, which announces no length
    with _connect(server) as sock:
        sock.sendall(
            _head("POST", "/api/auth/token", {"Content-Type": "application/json", "Transfer-Encoding": "chunked"})
        )
        # And exactly the cap sent in chunks: still within it
        chunk = b"x" * 65536
        for _ in range(DEFAULT_CAP_BYTES // len(chunk)):
            sock.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")

        # When one more byte passes the cap (and the body never ends)
        sock.sendall(b"1\r\nx\r\n")
        answer = _read_answer(sock)

    # Then the server stops reading and answers 413
    assert answer.status == 413, answer.body
    assert "1 MB" in answer.json()["detail"]


def test_an_upload_announcing_more_than_the_upload_cap_answers_413_without_being_read(server, transactional_db):
    # Given a tenant with a token who announces an upload just over DOCUMENT_MAX_UPLOAD_MB (plus the framing)
    token = api_token(UserFactory())
    announced = settings.DOCUMENT_MAX_UPLOAD_BYTES + MULTIPART_SLACK_BYTES + 1
    headers = {
        "Authorization": f"Token {token}",
        "Content-Type": "multipart/form-data; boundary=b",
        "Content-Length": str(announced),
    }
    with _connect(server) as sock:
        # When only the headers and the start of the multipart body are sent
        sock.sendall(_head("POST", "/api/documents", headers) + b'--b\r\nContent-Disposition: form-data; name="file"')
        answer = _read_answer(sock)

    # Then the upload is refused at once with 413, naming the upload limit
    assert answer.status == 413, answer.body
    assert f"{settings.DOCUMENT_MAX_UPLOAD_MB} MB" in answer.json()["detail"]


def test_an_upload_over_the_small_cap_but_under_the_upload_cap_is_stored(server, transactional_db, clean_redis):
    # Given a tenant signed in with a token, and a 2 MB PDF: over the 1 MB cap of other bodies
    tenant = UserFactory()
    token = api_token(tenant)
    content = text_pdf_bytes(["quarterly report " * 120_000])
    assert DEFAULT_CAP_BYTES < len(content) < settings.DOCUMENT_MAX_UPLOAD_BYTES

    # When it uploads the PDF through the real server
    response = requests.post(
        f"{server.url}/api/documents",
        files={"file": ("report.pdf", content, "application/pdf")},
        headers={"Authorization": f"Token {token}"},
        timeout=30,
    )

    # Then the document is stored
    assert response.status_code == 201, response.text
    assert response.json()["size"] == len(content)


def test_a_json_body_to_the_upload_route_keeps_the_small_cap(server):
    # Given a client announcing a 2 MB JSON body to the upload route (uploads have a larger cap)
    headers = {"Content-Type": "application/json", "Content-Length": str(2 * DEFAULT_CAP_BYTES)}
    with _connect(server) as sock:
        # When only the headers and a few bytes are sent
        sock.sendall(_head("POST", "/api/documents", headers) + b'{"file": "')
        answer = _read_answer(sock)

    # Then only a multipart upload gets the upload cap: this body is refused under the 1 MB one
    assert answer.status == 413, answer.body
    assert "1 MB" in answer.json()["detail"]
