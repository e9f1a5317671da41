"""Security: no credential in the server log (issue #16, point 3, last item).

Against the real server (uvicorn, the command ``make run`` starts): a client
signs in to the WebSocket with ``?token=`` and sends an HTTP request with a
token in its query string. uvicorn logs every request's path with its query
string, on its access log (HTTP) and on its error log (a WebSocket's
"[accepted]" line); the server's whole output is read back.
"""

from __future__ import annotations

import logging

import pytest
import requests
from websockets.sync.client import connect

from config.log_redaction import RedactQueryStrings
from tests.factories import api_token
from tests.web_server import WebServer
from tests.workers import wait_for

pytestmark = pytest.mark.slow


def _logged(server: WebServer, *fragments: str) -> str:
    """The server's output, once every fragment is in it (uvicorn writes each line as it answers)."""
    return str(wait_for(lambda: all(f in server.log() for f in fragments) and server.log(), 10, 0.05, str(fragments)))


def test_a_token_in_a_query_string_never_reaches_the_server_log(web_server, user):
    # Given a user's API token
    token = api_token(user)

    # When the user opens their job stream signed in with ?token= (the README's way)
    with connect(f"{web_server.ws_url}/ws/jobs/?token={token}&lang=en", open_timeout=30) as ws:
        assert ws.state.name == "OPEN"
    # And a client puts the token in the query string of an API request
    response = requests.get(
        f"{web_server.url}/api/documents?token={token}",
        headers={"Authorization": f"Token {token}"},
        timeout=30,
    )
    assert response.status_code == 200, response.text

    # Then the server's log (once it has both lines) never shows the token
    log = _logged(web_server, '"WebSocket /ws/jobs/?token=', '"GET /api/documents?token=')
    assert token not in log
    # And the error log's "accepted" line and the access log's line still show paths and parameter names
    assert '"WebSocket /ws/jobs/?token=[redacted]&lang=[redacted]" [accepted]' in log
    assert '"GET /api/documents?token=[redacted] HTTP/1.1" 200' in log


def test_bare_parameters_and_credential_headers_are_redacted_too():
    # Given the records uvicorn and the websockets library write (at debug level: handshake headers)
    records = [
        logging.LogRecord("uvicorn.error", logging.DEBUG, "", 0, "< GET %s HTTP/1.1", ("/ws/jobs/?abc123;x=1",), None),
        logging.LogRecord("uvicorn.error", logging.DEBUG, "", 0, "< %s: %s", ("Cookie", "sessionid=abc123"), None),
        logging.LogRecord("uvicorn.error", logging.INFO, "", 0, "GET /x?key=abc123 done", (), None),
    ]

    # When they pass the filter
    for record in records:
        RedactQueryStrings().filter(record)

    # Then no value is left, names and paths are
    lines = [record.getMessage() for record in records]
    assert lines == [
        "< GET /ws/jobs/?[redacted];x=[redacted] HTTP/1.1",
        "< Cookie: [redacted]",
        "GET /x?key=[redacted] done",
    ]
