"""The two modes Conveyor runs in, chosen with ``CONVEYOR_ENV``.

``development`` (the default, what ``make run`` uses) needs no configuration:
without ``SECRET_KEY`` it generates a key once and keeps it in the var
directory, so sessions survive restarts and no key is written in the code.

``production`` refuses to start on settings that are unsafe there: a missing
or weak ``SECRET_KEY``, no ``ALLOWED_HOSTS``, an SQLite (or unset)
``DATABASE_URL``, a weak ``METRICS_TOKEN`` or ``DEBUG`` on. The error is one
line naming the variable; ``manage.py`` and ``config/asgi.py`` print it
without a traceback (:data:`START_REFUSALS`).

Nothing here imports Django's settings: ``config/settings.py`` calls it while
it is being loaded.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from config.env import ImproperEnvironment

DEVELOPMENT = "development"
PRODUCTION = "production"
MODES = (DEVELOPMENT, PRODUCTION)

#: The key that config/settings.py carried before the modes existed: known to anyone with the code.
OLD_DEVELOPMENT_KEY = "dev-only-insecure-key-change-me-in-production"
#: Django's own bar for a secret key (its check security.W009).
SECRET_KEY_MIN_LENGTH = 50
SECRET_KEY_MIN_DISTINCT = 5
#: Anyone who can guess the metrics token reads queue names, depths and worker counts.
METRICS_TOKEN_MIN_LENGTH = 32
METRICS_TOKEN_MIN_DISTINCT = 8
#: File name of the generated development key, inside the var directory.
DEVELOPMENT_KEY_FILE = "secret_key"


class SettingsRefused(ImproperlyConfigured):
    """The environment asks for settings Conveyor will not start with; the message is one line."""


def read_mode() -> str:
    """``CONVEYOR_ENV``: ``development`` (unset or empty) or ``production``."""
    mode = os.environ.get("CONVEYOR_ENV", "").strip().lower() or DEVELOPMENT
    if mode not in MODES:
        raise SettingsRefused(f"CONVEYOR_ENV must be development or production, got {mode!r}")
    return mode


def development_secret_key(var_dir: Path) -> str:
    """The key kept in ``var_dir``, generated (mode 0600) on the first start.

    The new key is written whole to a private temporary file, then linked to
    its final name: processes starting at once (``runconveyor``'s children)
    never read a half-written key, and the first link wins for all of them.
    """
    path = var_dir / DEVELOPMENT_KEY_FILE
    if not path.exists():
        temporary = var_dir / f".{DEVELOPMENT_KEY_FILE}.{os.getpid()}.tmp"
        temporary.unlink(missing_ok=True)  # a crashed start's leftover: O_EXCL then sets the mode
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(64) + "\n")
            try:
                os.link(temporary, path)
            except FileExistsError:
                pass  # another process started at the same moment; its key is the one
        finally:
            temporary.unlink(missing_ok=True)
    key = path.read_text().strip()
    if not key:
        raise SettingsRefused(f"{path} is empty: delete it and a new development key is generated")
    return key


def weak_secret_key(key: str) -> str | None:
    """Why ``key`` is unfit for production, or None."""
    if not key:
        return "is unset"
    if key == OLD_DEVELOPMENT_KEY:
        return "is the old development default, which is public"
    if key.startswith("django-insecure-"):
        return "starts with 'django-insecure-' (a key Django generated for development)"
    if len(key) < SECRET_KEY_MIN_LENGTH:
        return f"is too short ({len(key)} characters, at least {SECRET_KEY_MIN_LENGTH})"
    if len(set(key)) < SECRET_KEY_MIN_DISTINCT:
        return f"has too little variety (fewer than {SECRET_KEY_MIN_DISTINCT} distinct characters)"
    return None


def weak_metrics_token(token: str) -> str | None:
    """Why ``token`` is unfit for production, or None. Unset is fine: /metrics then answers 404."""
    if not token:
        return None
    if len(token) < METRICS_TOKEN_MIN_LENGTH:
        return f"is too short ({len(token)} characters, at least {METRICS_TOKEN_MIN_LENGTH})"
    if len(set(token)) < METRICS_TOKEN_MIN_DISTINCT:
        return f"has too little variety (fewer than {METRICS_TOKEN_MIN_DISTINCT} distinct characters)"
    return None


def refuse_unsafe_production(
    *,
    secret_key: str,
    allowed_hosts: list[str],
    database_url: str,
    database_engine: str,
    metrics_token: str,
    debug: bool,
) -> None:
    """Raise :class:`SettingsRefused` naming every unsafe variable, on one line.

    All problems at once, so an operator fixes them in one round rather than
    one restart per variable.
    """
    problems: list[str] = []
    reason = weak_secret_key(secret_key)
    if reason:
        problems.append(f"SECRET_KEY {reason}")
    if not allowed_hosts:
        problems.append("ALLOWED_HOSTS is unset (the host names this site answers to, comma-separated)")
    if not database_url:
        problems.append("DATABASE_URL is unset (production needs PostgreSQL)")
    elif database_engine == "django.db.backends.sqlite3":
        problems.append("DATABASE_URL is SQLite (production needs PostgreSQL)")
    reason = weak_metrics_token(metrics_token)
    if reason:
        problems.append(f"METRICS_TOKEN {reason} (or unset it: /metrics then answers 404)")
    if debug:
        problems.append("DEBUG is on (it shows settings and tracebacks to visitors)")
    if problems:
        raise SettingsRefused("CONVEYOR_ENV=production refuses to start: " + "; ".join(problems))


#: What an entry point reports as one line (:func:`refusal_line`) instead of a traceback:
#: the message already names the variable, and a traceback would bury it.
START_REFUSALS = (SettingsRefused, ImproperEnvironment)


def refusal_line(exc: Exception) -> str:
    """The line ``manage.py`` and ``config/asgi.py`` print for a refused or malformed environment."""
    return "conveyor: " + " ".join(str(exc).split())
