"""Security: repeated failed sign-ins lock a username out, from that address only (django-axes).

Against the real server (uvicorn, the command ``make run`` starts), with a failure limit of 3.
The test client's requests come from 127.0.0.1, the trusted proxy (``FORWARDED_ALLOW_IPS``),
so ``X-Forwarded-For`` gives each "address" its own client address, as a TLS proxy would.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests

from tests.factories import UserFactory
from tests.web_server import WebServer

pytestmark = pytest.mark.django_db(transaction=True)
PASSWORD = "secret-pass-123"  # tests/factories.py
FAILURE_LIMIT = 3
GUESSER, OWNER = "203.0.113.7", "198.51.100.9"


@pytest.fixture
def server(clean_redis: None, transactional_db: None) -> Iterator[WebServer]:
    started = WebServer(env={"AXES_FAILURE_LIMIT": str(FAILURE_LIMIT)}).start()
    yield started
    started.stop()


def _form_sign_in(server: WebServer, path: str, address: str, username: str, password: str) -> requests.Response:
    """Post a Django login form (admin or /accounts/login/) as a browser at ``address`` would."""
    with requests.Session() as browser:
        browser.headers["X-Forwarded-For"] = address
        browser.get(f"{server.url}{path}", timeout=10).raise_for_status()
        return browser.post(
            f"{server.url}{path}",
            data={
                "username": username,
                "password": password,
                "csrfmiddlewaretoken": browser.cookies["csrftoken"],
                "next": "/admin/",
            },
            allow_redirects=False,
            timeout=10,
        )


def _signed_in(response: requests.Response) -> bool:
    return response.status_code == 302 and response.headers["Location"] == "/admin/"


@pytest.mark.parametrize("path", ["/admin/login/", "/accounts/login/"])
def test_guessing_a_password_locks_that_address_out_and_not_the_owner(server, path):
    admin: Any = UserFactory(username="admin", is_staff=True, is_superuser=True)

    # Given a guesser who got the admin's password wrong as many times as the limit allows
    answers = [_form_sign_in(server, path, GUESSER, admin.username, f"guess-{n}") for n in range(FAILURE_LIMIT)]
    assert [answer.status_code for answer in answers[:-1]] == [200] * (FAILURE_LIMIT - 1)

    # When the guesser then tries the right password, Then it is refused: the pair is locked out
    guessed = _form_sign_in(server, path, GUESSER, admin.username, PASSWORD)
    assert guessed.status_code == 429, guessed.text[:300]
    assert not _signed_in(guessed)
    assert int(guessed.headers["Retry-After"]) > 0

    # And the admin, from their own address, still signs in: nobody can lock `admin` out from elsewhere
    assert _signed_in(_form_sign_in(server, path, OWNER, admin.username, PASSWORD))


def test_guessing_through_the_api_locks_the_same_pair_out(server):
    # Given a user whose password was guessed wrong at the token endpoint as often as the limit allows
    user: Any = UserFactory()

    def sign_in(address: str, password: str) -> requests.Response:
        return requests.post(
            f"{server.url}/api/auth/token",
            json={"username": user.username, "password": password},
            headers={"X-Forwarded-For": address},
            timeout=10,
        )

    codes = [sign_in(GUESSER, f"guess-{n}").status_code for n in range(FAILURE_LIMIT - 1)]
    assert codes == [400] * (FAILURE_LIMIT - 1)
    assert sign_in(GUESSER, "one-more-guess").status_code == 429

    # When the right password comes from that address, Then it is refused with a JSON answer naming the field
    refused = sign_in(GUESSER, PASSWORD)
    assert refused.status_code == 429
    assert "username" in refused.json()["errors"]
    # And from the user's own address it gets a token
    assert sign_in(OWNER, PASSWORD).status_code == 200
