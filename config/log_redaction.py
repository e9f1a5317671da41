"""No credential in uvicorn's log lines: query string values become ``[redacted]``.

uvicorn writes each request's path with its query string: HTTP requests on
its access log (``uvicorn.access``: ``"GET /api/documents?token=... HTTP/1.1" 200``)
and WebSocket handshakes on its error log (``uvicorn.error``:
``"WebSocket /ws/jobs/?token=..." [accepted]``). Clients put credentials
there (the WebSocket's ``?token=``, signed links), and any value may be one,
so every value is replaced; the parameter names stay, so a line still says
which parameters were sent (``/ws/jobs/?token=[redacted]``).

``RedactQueryStrings`` rewrites a record's arguments (and a message logged
without arguments) on the logger itself, before any handler, formatter or
Sentry's logging integration sees it. The websockets library logs through
``uvicorn.error`` too; at debug level it prints handshake headers, so the
values of credential headers (``Authorization``, ``Cookie``, ...) are
redacted as well. ``install()`` attaches the filter to both loggers; the
ASGI entry point calls it once uvicorn has set up its logging.
"""

from __future__ import annotations

import logging
import re
from typing import Any

REDACTED = "[redacted]"

#: The loggers uvicorn (and the websockets library under it) write request paths to.
UVICORN_LOGGERS = ("uvicorn.access", "uvicorn.error")

#: Headers whose values are credentials (lower case).
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"})

# A query string inside a longer text: from "?" to the next blank or quote.
_QUERY_IN_TEXT = re.compile(r"\?([^\s\"']*)")
_PAIR_SEPARATORS = re.compile(r"([&;])")


def redact_query(query: str) -> str:
    """``a=1&b`` -> ``a=[redacted]&[redacted]``: names kept, every value (and a bare parameter) replaced."""
    redacted = []
    for part in _PAIR_SEPARATORS.split(query):
        if part in ("", "&", ";"):
            redacted.append(part)
        else:
            name, equals, _ = part.partition("=")
            redacted.append(f"{name}={REDACTED}" if equals else REDACTED)
    return "".join(redacted)


def redact_path(path: str) -> str:
    """A path with its query string (a log argument): everything after the first ``?`` is query."""
    head, question, query = path.partition("?")
    return f"{head}?{redact_query(query)}" if question else path


def redact_text(text: str) -> str:
    """Every query string inside a text (a message logged already formatted)."""
    return _QUERY_IN_TEXT.sub(lambda match: "?" + redact_query(match.group(1)), text) if "?" in text else text


def _redact_args(args: tuple[Any, ...]) -> tuple[Any, ...]:
    redacted: list[Any] = []
    credential_next = False
    for arg in args:
        if credential_next:
            redacted.append(REDACTED)
            credential_next = False
            continue
        if isinstance(arg, str):
            credential_next = arg.strip().lower() in CREDENTIAL_HEADERS
            arg = redact_path(arg)
        redacted.append(arg)
    return tuple(redacted)


class RedactQueryStrings(logging.Filter):
    """Rewrites query string values (and credential header values) in a record to ``[redacted]``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = _redact_args(record.args)
        elif not record.args and isinstance(record.msg, str):
            record.msg = redact_text(record.msg)
        return True


def install() -> None:
    """Attach the filter to uvicorn's access and error loggers (once per logger)."""
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(existing, RedactQueryStrings) for existing in logger.filters):
            logger.addFilter(RedactQueryStrings())
