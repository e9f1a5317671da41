"""Security: API tokens are stored hashed, expire, can be revoked; the WebSocket signs in by single-use ticket.

Against the real server (uvicorn, the command ``make run`` starts). Before issue #16 tokens
were DRF's: the key in plaintext in the database, valid forever, one per user, and the
WebSocket took it in its URL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from django.db import connection
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.factories import UserFactory
from tests.web_server import WebServer
from tests.workers import wait_for

pytestmark = pytest.mark.django_db(transaction=True)
PASSWORD = "secret-pass-123"  # tests/factories.py
WAIT_S = 30.0
CLOSE_UNAUTHENTICATED = 4001


def _sign_in(server: WebServer, user: Any) -> str:
    response = requests.post(
        f"{server.url}/api/auth/token", data={"username": user.username, "password": PASSWORD}, timeout=10
    )
    assert response.status_code == 200, response.text
    return str(response.json()["token"])


def _post(server: WebServer, path: str, token: str) -> requests.Response:
    return requests.post(f"{server.url}{path}", headers={"Authorization": f"Token {token}"}, timeout=10)


def _get_jobs(server: WebServer, token: str) -> requests.Response:
    return requests.get(f"{server.url}/api/jobs", headers={"Authorization": f"Token {token}"}, timeout=10)


def _first_message_or_close(ws: ClientConnection) -> Any:
    """The socket's first message (a dict), or its close code when the server closed it instead."""
    try:
        return json.loads(ws.recv(timeout=WAIT_S))
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None


def _tables_holding(text: str) -> list[str]:
    """Every table of the test database with a text column holding ``text`` anywhere."""
    found = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            columns = [
                column.name
                for column in connection.introspection.get_table_description(cursor, table)
                if column.type_code in (25, 1043)  # PostgreSQL text, varchar
            ]
            if not columns:
                continue
            where = " OR ".join(f'position(%s in "{column}") > 0' for column in columns)
            # Table and column names come from the database's own catalogue; the value is a parameter.
            cursor.execute(f'SELECT 1 FROM "{table}" WHERE {where} LIMIT 1', [text] * len(columns))
            if cursor.fetchone():
                found.append(table)
    return found


@pytest.fixture
def short_lived_tokens(clean_redis: None, transactional_db: None) -> Iterator[WebServer]:
    """The real server with tokens that expire two seconds after they are issued."""
    server = WebServer(env={"API_TOKEN_TTL_HOURS": str(2 / 3600)}).start()
    yield server
    server.stop()


def test_a_token_is_stored_only_as_a_digest(web_server):
    # Given a user who signed in for an API token
    token = _sign_in(web_server, UserFactory())
    assert _get_jobs(web_server, token).status_code == 200

    # Then no table of the database holds the token (a database dump signs nobody in)
    assert _tables_holding(token) == []


def test_an_expired_token_is_refused(short_lived_tokens):
    # Given a token that works
    token = _sign_in(short_lived_tokens, UserFactory())
    assert _get_jobs(short_lived_tokens, token).status_code == 200

    # When its time to live has passed, Then it is refused (a bounded poll: the server's clock decides)
    wait_for(lambda: _get_jobs(short_lived_tokens, token).status_code == 401, WAIT_S, 0.5, "the token to expire")


def test_a_revoked_token_is_refused_and_the_users_other_devices_stay_signed_in(web_server):
    # Given a user signed in on two devices
    user = UserFactory()
    laptop, phone = _sign_in(web_server, user), _sign_in(web_server, user)

    # When the laptop signs out
    response = _post(web_server, "/api/auth/logout", laptop)
    assert response.status_code == 204, response.text

    # Then the laptop's token is refused and the phone's still works
    assert _get_jobs(web_server, laptop).status_code == 401
    assert _get_jobs(web_server, phone).status_code == 200

    # And signing out everywhere refuses the phone's too
    response = _post(web_server, "/api/auth/logout-all", phone)
    assert response.status_code == 204, response.text
    assert _get_jobs(web_server, phone).status_code == 401


def test_a_websocket_ticket_signs_in_once_and_never_twice(web_server):
    # Given a ticket asked for with an API token
    token = _sign_in(web_server, UserFactory())
    response = _post(web_server, "/api/auth/ws-ticket", token)
    assert response.status_code == 200, response.text
    ticket = response.json()["ticket"]
    assert response.json()["expires_in"] == 30

    # When the job stream is opened with it, Then the user is signed in (their stream goes live)
    with connect(f"{web_server.ws_url}/ws/jobs/?ticket={ticket}", open_timeout=WAIT_S) as ws:
        assert _first_message_or_close(ws) == {"type": "live"}
    # And the same ticket a second time signs nobody in
    with connect(f"{web_server.ws_url}/ws/jobs/?ticket={ticket}", open_timeout=WAIT_S) as ws:
        assert _first_message_or_close(ws) == CLOSE_UNAUTHENTICATED


def test_a_websocket_token_in_the_url_still_works_and_logs_a_deprecation_without_the_token(web_server):
    # Given a client of the previous release, which puts its API token in the WebSocket URL
    user = UserFactory()
    token = _sign_in(web_server, user)

    # When it opens its job stream that way, Then it is still signed in
    with connect(f"{web_server.ws_url}/ws/jobs/?token={token}", open_timeout=WAIT_S) as ws:
        assert _first_message_or_close(ws) == {"type": "live"}

    # And the server logs a deprecation naming the user and the replacement, never the token
    log = str(wait_for(lambda: "deprecated" in web_server.log() and web_server.log(), 10, 0.05, "the deprecation"))
    assert f"WebSocket sign-in with ?token= is deprecated (user {user.username})" in log
    assert "/api/auth/ws-ticket" in log
    assert token not in log
