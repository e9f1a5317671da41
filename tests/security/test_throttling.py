"""Password guessing and request floods get 429 with Retry-After, counted across the server's processes.

The server runs with the production rates (the test settings turn throttling off for the rest of the suite).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.documents.pdfs import text_pdf_bytes
from tests.factories import UserFactory
from tests.web_server import WebServer

pytestmark = pytest.mark.django_db(transaction=True)
PASSWORD = "secret-pass-123"  # tests/factories.py
RATES = {
    "THROTTLE_LOGIN_ADDRESS": "30/minute",
    "THROTTLE_LOGIN_USERNAME": "10/minute",
    "THROTTLE_JOB_START": "5/minute",
    "THROTTLE_UPLOAD": "3/minute",
}


@pytest.fixture
def server(clean_redis: None, transactional_db: None) -> Iterator[WebServer]:
    started = WebServer(env=RATES).start()
    yield started
    started.stop()


def _sign_in(server: WebServer, username: str, password: str) -> requests.Response:
    return requests.post(f"{server.url}/api/auth/token", data={"username": username, "password": password}, timeout=10)


def test_guessing_one_accounts_password_is_stopped_with_429_and_retry_after(server):
    victim = UserFactory()

    answers = [_sign_in(server, victim.username, f"guess-{n}") for n in range(30)]

    codes = [answer.status_code for answer in answers]
    assert codes[:10] == [400] * 10, codes
    assert set(codes[10:]) == {429}, codes
    assert int(answers[-1].headers["Retry-After"]) > 0
    # The right password is refused too while the username is throttled: the guesser learns nothing.
    assert _sign_in(server, victim.username, PASSWORD).status_code == 429


def test_guessing_across_many_usernames_from_one_address_is_stopped(server):
    codes = [_sign_in(server, f"nobody{n}", "guess").status_code for n in range(31)]

    assert codes[:30] == [400] * 30, codes
    assert codes[30] == 429


def _token(server: WebServer, user: Any) -> dict[str, str]:
    response = _sign_in(server, user.username, PASSWORD)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Token {response.json()['token']}"}


def test_one_user_starting_jobs_in_a_flood_is_throttled_and_others_are_not(server):
    flooder, bystander = UserFactory(is_staff=True), UserFactory(is_staff=True)
    flood, calm = _token(server, flooder), _token(server, bystander)
    url = f"{server.url}/api/jobs/canary"

    codes = [requests.post(url, json={"queue": "maintenance"}, headers=flood, timeout=10).status_code for _ in range(7)]

    assert codes == [202] * 5 + [429] * 2, codes
    assert requests.post(url, json={"queue": "maintenance"}, headers=calm, timeout=10).status_code == 202


def test_uploads_are_throttled_per_user_and_listing_is_not(server):
    headers = _token(server, UserFactory())
    pdf = text_pdf_bytes(["one page"])

    def upload() -> int:
        files = {"file": ("one.pdf", pdf, "application/pdf")}
        return requests.post(f"{server.url}/api/documents", files=files, headers=headers, timeout=30).status_code

    codes = [upload() for _ in range(4)]

    assert codes == [201, 201, 201, 429], codes
    assert requests.get(f"{server.url}/api/documents", headers=headers, timeout=10).status_code == 200
