"""Static files served by the ASGI application itself (ServeStatic), in front of Django.

Under uvicorn with DEBUG off Django serves no static files, and the admin renders
unstyled. ``serve_static`` wraps the HTTP application: a request for a file that
``collectstatic`` put in ``STATIC_ROOT`` is answered from a table built at start-up,
streamed from disk in chunks (a precompressed ``.gz``/``.br`` twin when the client
accepts it); anything else goes on to Django.

Why in front of Django rather than as Django middleware: ServeStatic's middleware
is async-only, so every request through a synchronous handler (Django's test client,
WSGI) would cross an async/sync bridge twice. Here a request that is not for a
static file costs one dictionary look-up.

Names with the manifest's 12-hex-digit hash (``base.5af66c1b1797.css``) are cached
by browsers for ten years (``immutable``); their content never changes under that
name. Unhashed names are cached for ``STATIC_MAX_AGE`` seconds.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from wsgiref.headers import Headers

from django.conf import settings
from django.contrib.staticfiles.storage import ManifestStaticFilesStorage, staticfiles_storage
from servestatic.asgi import ServeStaticASGI

logger = logging.getLogger(__name__)


def _nosniff(headers: Headers, path: str, url: str) -> None:
    # Django's SecurityMiddleware adds this to its own responses; static ones never reach it.
    headers["X-Content-Type-Options"] = "nosniff"


def _warn_if_not_collected(static_root: Path) -> None:
    if not static_root.is_dir():
        logger.warning(
            "STATIC_ROOT %s does not exist: run `manage.py collectstatic`; pages will render unstyled",
            static_root,
        )
    elif (
        isinstance(staticfiles_storage, ManifestStaticFilesStorage)
        and not (static_root / staticfiles_storage.manifest_name).is_file()
    ):
        # Every page using {% static %} then fails with "Missing staticfiles manifest entry".
        logger.error(
            "STATIC_ROOT %s has no %s: run `manage.py collectstatic` before starting the web server",
            static_root,
            staticfiles_storage.manifest_name,
        )


def serve_static(application: Any) -> ServeStaticASGI:
    """``application`` with the files under ``STATIC_ROOT`` served at ``STATIC_URL`` in front of it."""
    static_root = Path(settings.STATIC_ROOT)
    _warn_if_not_collected(static_root)
    server = ServeStaticASGI(
        application,
        max_age=settings.STATIC_MAX_AGE,
        # In DEBUG a re-run of collectstatic shows without a restart (each request looks on disk).
        autorefresh=settings.DEBUG,
        # The API's CORS policy is not the static files' business: no Access-Control-Allow-Origin.
        allow_all_origins=False,
        add_headers_function=_nosniff,
    )
    if static_root.is_dir() or settings.DEBUG:
        server.add_files(static_root, prefix=settings.STATIC_URL)
    return server
