"""Typed readers for settings that come from the environment.

Every setting the project reads from the environment goes through one of
these helpers, so a wrong value fails at start-up with the variable's name.
"""

from __future__ import annotations

import os


class ImproperEnvironment(ValueError):
    """An environment variable holds a value of the wrong shape."""


def env_str(name: str, default: str) -> str:
    return os.environ.get(name, default)


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ImproperEnvironment(f"{name} must be an integer, got {raw!r}") from exc


def env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ImproperEnvironment(f"{name} must be a number, got {raw!r}") from exc


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperEnvironment(f"{name} must be a boolean (1/0, true/false), got {raw!r}")


def env_list(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_header(name: str) -> tuple[str, str] | None:
    """A request header and the value it must have, as ``Header-Name=value``; None when unset.

    The result is Django's shape for ``SECURE_PROXY_SSL_HEADER``: the header's
    ``request.META`` key (``HTTP_X_FORWARDED_PROTO``) and the value.
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    header, sep, value = raw.partition("=")
    header, value = header.strip(), value.strip()
    if not sep or not header or not value:
        raise ImproperEnvironment(f"{name} must look like X-Forwarded-Proto=https, got {raw!r}")
    key = header.upper().replace("-", "_")
    return (key if key.startswith("HTTP_") else f"HTTP_{key}", value)


_RATE_PERIODS = ("s", "m", "h", "d")


def env_rate(name: str, default: str) -> str | None:
    """A request rate as DRF reads it, ``<n>/<second|minute|hour|day>``; ``off`` (or empty) gives None."""
    raw = os.environ.get(name, default).strip().lower()
    if raw in ("", "off", "none"):
        return None
    count, sep, period = raw.partition("/")
    if not sep or not count.isdigit() or int(count) < 1 or not period or period[0] not in _RATE_PERIODS:
        raise ImproperEnvironment(f"{name} must look like 30/minute (or off), got {raw!r}")
    return raw
