"""Secrets taken out of text and data that leave the process (error reports, reasons shown to people).

Two shapes of secret are recognised in free text: the credentials of a URL
(``postgres://user:password@host``: an export spec's repr holds the database
URL) and a ``name=value`` or ``'name': 'value'`` pair whose name says it is a
secret (a libpq conninfo's ``password=...``, a dict's repr). In structured
data, the value under a key that names a secret is replaced whole.
"""

from __future__ import annotations

import re
from typing import Any

FILTERED = "[Filtered]"

#: Keys whose values are secrets wherever they appear (compared in lower case, whole key).
SECRET_KEYS = frozenset(
    {
        "password",
        "passwd",
        "pwd",
        "secret",
        "secret_key",
        "token",
        "key",
        "api_key",
        "apikey",
        "dsn",
        "sentry_dsn",
        "database_url",
        "redis_url",
        "broker_url",
        "aws_secret_access_key",
        "aws_session_token",
        "authorization",
        "proxy-authorization",
        "cookie",
        "set_cookie",
        "credentials",
        "private_key",
        "privatekey",
        "session",
        "sessionid",
        "csrftoken",
        "x_api_key",
        "ticket",
    }
)

#: Fragments that make any key a secret's (``EMAIL_HOST_PASSWORD``, ``client_secret``, ``refresh_token``).
SECRET_KEY_FRAGMENTS = ("password", "passwd", "secret", "token", "credential", "private_key", "access_key")

# scheme://userinfo@ : everything between "//" and "@" (user, or user:password) goes.
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s@'\"<>]+@")
# password=..., "password": "...", 'secret_key': '...' (the name, then = or :, then the value).
_NAMED_SECRET = re.compile(
    r"(?i)((?:[\w\-]*(?:password|passwd|secret|token|api_?key|access_key|credential)[\w\-]*|pwd|dsn)"
    r"['\"]?\s*[=:]\s*)(['\"]?)([^\s'\",;&}\])]+)"
)


def is_secret_key(name: str) -> bool:
    """Whether a key (a setting, a header, a dict key) names a secret."""
    lowered = name.lower()
    return lowered in SECRET_KEYS or any(fragment in lowered for fragment in SECRET_KEY_FRAGMENTS)


def redact_text(text: str) -> str:
    """``text`` with URL credentials and named secrets replaced by ``[Filtered]``."""
    if not text:
        return text
    text = _URL_CREDENTIALS.sub(lambda match: f"{match.group(1)}{FILTERED}@", text)
    return _NAMED_SECRET.sub(lambda match: f"{match.group(1)}{match.group(2)}{FILTERED}", text)


def redact_data(value: Any) -> Any:
    """A copy of nested dicts/lists/strings with secret keys' values and secrets in strings filtered."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        return {
            key: FILTERED if isinstance(key, str) and is_secret_key(key) and item else redact_data(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact_data(item) for item in value]
    if isinstance(value, tuple):
        return tuple(redact_data(item) for item in value)
    return value
