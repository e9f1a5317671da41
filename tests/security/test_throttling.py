"""Password guessing and request floods get 429 with Retry-After, counted across the server's processes.

The server runs with the production rates (the test settings turn throttling off for the rest of the suite).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from jobs.web.api.throttles import seconds_until_allowed
from tests.documents.pdfs import text_pdf_bytes
from tests.factories import UserFactory
from tests.web_server import WebServer, free_port

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


def test_with_redis_unreachable_sign_in_is_served_not_throttled_or_failed(transactional_db):
    # Given a server with the production rates whose Redis does not answer (nothing listens on the port)
    server = WebServer(env={**RATES, "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}).start()
    try:
        victim = UserFactory()
        # When a client signs in more often than the per-username rate allows
        codes = [_sign_in(server, victim.username, f"guess-{n}").status_code for n in range(12)]
        # Then every attempt is answered as if no throttle ran (the throttle guards the server, it must not fail it)
        assert codes == [400] * 12, codes
        assert _sign_in(server, victim.username, PASSWORD).status_code == 200
        assert "could not count a request" in server.log()
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("previous", "current", "elapsed", "expected"),
    [
        # The window before was quiet and this one is full: wait until enough of this one has slid out.
        (0, 10, 0.5, 36.0),
        # The window before was full and nothing came since: its weight has fallen enough already.
        (10, 0, 0.2, 0.0),
        # Both count: wait until the window before weighs little enough, still within this window.
        (10, 5, 0.2, 24.0),
    ],
)
def test_retry_after_is_when_the_sliding_window_has_room_again(previous, current, elapsed, expected):
    # Given a limit of 10 a minute, a window before with `previous` requests and this one with `current`
    waited = seconds_until_allowed(previous, current, 10, elapsed, 60)
    # Then one more request fits after exactly the time computed, and not before
    assert waited == pytest.approx(expected)
    later = elapsed + waited / 60
    if later < 1:
        assert previous * (1 - later) + current + 1 <= 10 + 1e-9
    else:
        assert current * (1 - (later - 1)) + 1 <= 10 + 1e-9
