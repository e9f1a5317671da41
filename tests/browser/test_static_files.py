"""Static files as production serves them: styled consoles and API docs, from this host only.

The web server here runs the production way: DEBUG off, production's static storage
(hashed names, gzip twins, a manifest) and files put in place by ``collectstatic``
(``tests/browser/static_settings.py``). A page only counts as styled when a computed
style shows its stylesheet applied: a 404 stylesheet leaves a page that still answers 200.

Screenshots of every page land in ``var/screenshots/static-files/`` (overwritten by each run).
"""

from __future__ import annotations

import gzip
import re
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.conf import settings

from tests.factories import UserFactory
from tests.jobs.helpers import start
from tests.web_server import WebServer, session_cookie
from tests.workers import ROOT

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SCREENSHOTS = ROOT / "var" / "screenshots" / "static-files"
WAIT_MS = 30_000
# Django's ManifestStaticFilesStorage puts 12 hex digits of the content's MD5 before the extension.
HASHED_NAME = re.compile(r"\.[0-9a-f]{12}\.[A-Za-z0-9]+$")
TEN_YEARS = "max-age=315360000, public, immutable"

# The admin's base.css (light scheme): #header { background: var(--header-bg) }, --header-bg: #417690,
# and body { font-family: var(--font-family-primary) }, which starts with "Segoe UI".
ADMIN_HEADER_BACKGROUND = "rgb(65, 118, 144)"
ADMIN_FONT = '"Segoe UI"'
# swagger-ui.css: .swagger-ui { color: #3b4151; font-family: sans-serif }, .info .title { font-size: 36px }.
SWAGGER_TEXT_COLOUR = "rgb(59, 65, 81)"


@dataclass
class NetworkLog:
    """Everything the browser asked for, and the status of each static file it got."""

    urls: list[str] = field(default_factory=list)
    static_statuses: dict[str, int] = field(default_factory=dict)
    # Stopped inside the browser by the page's Content-Security-Policy: never sent.
    blocked_by_policy: set[str] = field(default_factory=set)

    def record_request(self, request: Any) -> None:
        self.urls.append(request.url)

    def record_response(self, response: Any) -> None:
        if urlsplit(response.url).path.startswith(settings.STATIC_URL):
            self.static_statuses[response.url] = response.status

    def record_failure(self, request: Any) -> None:
        # Chromium through Playwright reports "csp" (the network error name is the other spelling).
        if request.failure in ("csp", "net::ERR_BLOCKED_BY_CSP"):
            self.blocked_by_policy.add(request.url)

    def outside(self, own_netloc: str) -> list[str]:
        # data: and blob: URLs are made in the page itself (Redoc's worker, inline images).
        return [
            url
            for url in self.urls
            if urlsplit(url).scheme not in ("data", "blob")
            and urlsplit(url).netloc != own_netloc
            and url not in self.blocked_by_policy
        ]


def _computed(page: Any, selector: str, *properties: str) -> dict[str, str]:
    script = (
        "(element, names) => Object.fromEntries(names.map(n => [n, getComputedStyle(element).getPropertyValue(n)]))"
    )
    return dict(page.eval_on_selector(selector, script, list(properties)))


def _linked_stylesheets(page: Any) -> list[dict[str, Any]]:
    """Each <link rel=stylesheet> with its number of CSS rules (-1: the browser did not load it as CSS)."""
    script = """() => Array.from(document.querySelectorAll('link[rel=stylesheet]')).map(link => {
        let rules = -1;
        try { rules = link.sheet ? link.sheet.cssRules.length : -1; } catch (e) {}
        return {href: link.href, rules: rules};
    })"""
    return list(page.evaluate(script))


def _admin_is_styled(page: Any) -> None:
    assert _computed(page, "#header", "background-color") == {"background-color": ADMIN_HEADER_BACKGROUND}
    assert _computed(page, "body", "font-family")["font-family"].startswith(ADMIN_FONT)


def _job_page_is_styled(page: Any) -> None:
    # jobs/static/jobs/job_progress.css: a 40rem column in the system font.
    assert _computed(page, "body", "max-width", "font-family") == {
        "max-width": "640px",
        "font-family": "system-ui, sans-serif",
    }


def _swagger_is_styled(page: Any) -> None:
    assert _computed(page, ".swagger-ui", "color", "font-family") == {
        "color": SWAGGER_TEXT_COLOUR,
        "font-family": "sans-serif",
    }
    assert _computed(page, ".swagger-ui .info .title", "font-size") == {"font-size": "36px"}
    assert page.locator(".swagger-ui .opblock").count() > 0  # the schema loaded and rendered


def _redoc_is_styled(page: Any) -> None:
    # Redoc's styles are injected by its script (from the sidecar's static files), not linked.
    assert page.locator(".api-content h1").first.text_content().startswith("Conveyor API")
    assert _computed(page, ".api-content h1", "font-family")["font-family"].startswith("Montserrat")


@dataclass(frozen=True)
class Visit:
    name: str
    path: str
    ready: str  # a selector present once the page has rendered
    is_styled: Callable[[Any], None]
    links_stylesheets: bool = True
    full_page: bool = True  # Redoc's page is some 16,000 px tall: its first screen says enough


def test_consoles_and_api_docs_are_styled_from_this_host_only(production_server: WebServer, browser: Any) -> None:
    # Given a staff member signed in, and a job
    staff = UserFactory(is_staff=True, is_superuser=True)
    job = start("canary", staff, queue="maintenance")
    visits = [
        Visit("admin-index", "/admin/", "#site-name", _admin_is_styled),
        Visit("admin-queues", "/admin/queues/", "#queue-table", _admin_is_styled),
        Visit("admin-job-change", f"/admin/jobs/job/{job.pk}/change/", "#job_form", _admin_is_styled),
        Visit("job-page", f"/jobs/{job.pk}/", "#connection:text('live')", _job_page_is_styled),
        Visit("api-docs-swagger", "/api/docs/", ".swagger-ui .opblock", _swagger_is_styled),
        Visit(
            "api-docs-redoc",
            "/api/redoc/",
            ".api-content h1",
            _redoc_is_styled,
            links_stylesheets=False,
            full_page=False,
        ),
    ]
    context = browser.new_context(
        base_url=production_server.url, color_scheme="light", viewport={"width": 1280, "height": 900}
    )
    cookie = {"name": settings.SESSION_COOKIE_NAME, "value": session_cookie(staff), "url": production_server.url}
    context.add_cookies([cookie])
    log = NetworkLog()
    context.on("request", log.record_request)
    context.on("response", log.record_response)
    context.on("requestfailed", log.record_failure)
    page = context.new_page()
    page.on("websocket", log.record_request)  # a socket has a url too
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        for visit in visits:
            # When the staff member opens the page
            response = page.goto(visit.path)
            assert response is not None and response.status == 200, visit.path
            page.wait_for_selector(visit.ready, timeout=WAIT_MS)
            page.screenshot(path=str(SCREENSHOTS / f"{visit.name}.png"), full_page=visit.full_page)
            print(f"screenshot: {SCREENSHOTS / f'{visit.name}.png'}")

            # Then its stylesheets (hashed names) loaded as CSS and apply
            if visit.links_stylesheets:
                sheets = _linked_stylesheets(page)
                assert sheets, f"{visit.path} links no stylesheet"
                for sheet in sheets:
                    assert sheet["rules"] > 0, f"{visit.path}: {sheet['href']} did not load as CSS"
                    assert HASHED_NAME.search(urlsplit(sheet["href"]).path), sheet["href"]
            visit.is_styled(page)
    finally:
        context.close()

    # And every static file was found, and nothing was asked of any other host
    assert log.static_statuses and all(status < 400 for status in log.static_statuses.values()), log.static_statuses
    assert log.outside(urlsplit(production_server.url).netloc) == []


def test_static_files_come_hashed_compressed_and_cached_for_years(
    production_server: WebServer, collected_static: Path
) -> None:
    # Given the stylesheet the admin's login page links
    login_page = urllib.request.urlopen(f"{production_server.url}/admin/login/", timeout=10).read().decode()
    found = re.search(r'href="(/static/admin/css/base\.[0-9a-f]{12}\.css)"', login_page)
    assert found, "the admin links base.css under a hashed name"
    hashed_url = found.group(1)

    # When a browser that accepts gzip fetches it
    request = urllib.request.Request(f"{production_server.url}{hashed_url}", headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(request, timeout=10) as response:
        headers, body = response.headers, response.read()

    # Then it gets the precompressed twin, cacheable for ten years, with the file's exact content
    assert headers["Content-Encoding"] == "gzip"
    assert headers["Cache-Control"] == TEN_YEARS
    assert headers["Content-Type"].startswith("text/css")
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert gzip.decompress(body) == (collected_static / hashed_url.removeprefix("/static/")).read_bytes()

    # And the unhashed name is cached only briefly (its content changes with a release)
    with urllib.request.urlopen(f"{production_server.url}/static/admin/css/base.css", timeout=10) as response:
        assert response.headers["Cache-Control"] == f"max-age={settings.STATIC_MAX_AGE}, public"
