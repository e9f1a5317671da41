"""Fixtures for browser tests: a headless chromium driving the real web server.

Reusable by any browser test (mark it ``@pytest.mark.browser``):

* ``web_server`` (from ``tests/conftest.py``): uvicorn serving ``config.asgi`` (HTTP and
  WebSocket) on a free port with the test settings and the test database;
  ``web_server.url`` is its base URL.
* ``browser``: one Playwright chromium per test session (Debian's ``/usr/bin/chromium``,
  headless, ``--no-sandbox``; Playwright cannot download browsers here).
* ``page``: a fresh browser context and page per test, closed afterwards.
* ``login(page, user)``: signs ``user`` in by giving the page a real Django session
  cookie (no login form needed), so session-authenticated pages and sockets work.
* ``production_server``: uvicorn the production way (DEBUG off, manifest static storage,
  a STATIC_ROOT filled by ``collectstatic`` once per session), for tests that look at styling.
* ``styled_page`` and ``styled_login(page, user)``: ``page`` and ``login`` on ``production_server``,
  a light 1280 x 900 window, for tests that keep screenshots people look at.

Example::

    @pytest.mark.browser
    def test_admin_lists_jobs(web_server, page, login, staff):
        login(page, staff)
        page.goto(f"{web_server.url}/admin/jobs/job/")
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from tests.web_server import WebServer, session_cookie
from tests.workers import ROOT

CHROMIUM = "/usr/bin/chromium"
ASYNC_UNSAFE = "DJANGO_ALLOW_ASYNC_UNSAFE"


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an asyncio loop in this thread, and Django then refuses
    # database calls from it ("async context"); the test code itself stays synchronous.
    # (tests.web_server strips the variable from the server's environment.)
    previous = os.environ.get(ASYNC_UNSAFE)
    os.environ[ASYNC_UNSAFE] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop(ASYNC_UNSAFE, None)
        else:
            os.environ[ASYNC_UNSAFE] = previous


@pytest.fixture
def page(browser: Any, web_server: Any) -> Iterator[Any]:
    context = browser.new_context(base_url=web_server.url)
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def login(web_server: Any) -> Callable[[Any, Any], None]:
    """``login(page, user)``: the page's browser context is now signed in as ``user``."""

    def sign_in(page: Any, user: Any) -> None:
        page.context.add_cookies(
            [{"name": settings.SESSION_COOKIE_NAME, "value": session_cookie(user), "url": web_server.url}]
        )

    return sign_in


#: The production-like settings of `production_server` (static_settings.py).
SETTINGS = "tests.browser.static_settings"


@pytest.fixture(scope="session")
def collected_static(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A STATIC_ROOT filled by ``collectstatic`` with production's storage, as `make run` and the image do."""
    root = tmp_path_factory.mktemp("static-root")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": SETTINGS, "STATIC_ROOT": str(root)}
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    command = [sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    assert (root / "staticfiles.json").is_file()
    return root


@pytest.fixture
def production_server(clean_redis: None, transactional_db: None, collected_static: Path) -> Iterator[WebServer]:
    """uvicorn as production runs it: DEBUG off, manifest storage, the collected STATIC_ROOT."""
    server = WebServer(env={"DJANGO_SETTINGS_MODULE": SETTINGS, "STATIC_ROOT": str(collected_static), "DEBUG": "false"})
    server.start()
    yield server
    server.stop()


@pytest.fixture
def styled_page(browser: Any, production_server: WebServer) -> Iterator[Any]:
    """A page on ``production_server``: the admin's and the job page's stylesheets apply, as in production."""
    context = browser.new_context(
        base_url=production_server.url, color_scheme="light", viewport={"width": 1280, "height": 900}
    )
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def styled_login(production_server: WebServer) -> Callable[[Any, Any], None]:
    """``styled_login(page, user)``: ``styled_page``'s context is now signed in as ``user``."""

    def sign_in(page: Any, user: Any) -> None:
        page.context.add_cookies(
            [{"name": settings.SESSION_COOKIE_NAME, "value": session_cookie(user), "url": production_server.url}]
        )

    return sign_in
