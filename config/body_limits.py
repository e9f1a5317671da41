"""Request bodies capped before Django reads them: 413 instead of a 2 GB spool in ``/tmp``.

Django's ASGI handler reads a request's whole body (into a temporary file past
``FILE_UPLOAD_MAX_MEMORY_SIZE``) before it routes the request, so no view, no
authentication and no ``DATA_UPLOAD_MAX_MEMORY_SIZE`` gets a say until the
last byte has arrived. ``BodyLimit`` sits in front of everything
(``config.asgi``) and counts instead:

* a ``Content-Length`` over the cap is answered 413 at once, before a byte of
  the body is read (an ``Expect: 100-continue`` client is never told to send it);
* a body without one (chunked) is counted as it arrives; the message that
  passes the cap is not handed on: the application hears that the client left
  (``http.disconnect``, on which Django stops quietly) and the client gets 413,
  unless a response had already started (then the connection just ends).

Either way the answer carries ``Connection: close``: the unread rest of the
body is never parsed as a next request.

The cap is ``REQUEST_MAX_BODY_BYTES`` (1 MB), except a multipart POST to an
upload route (``UPLOAD_ROUTES``): ``DOCUMENT_MAX_UPLOAD_BYTES`` plus the
multipart framing. The upload route is looked up only for bodies over the
small cap, so an ordinary request costs a header scan and a byte count.
WebSocket and lifespan scopes pass through untouched.

``schema_payload_too_large`` (a drf-spectacular hook) puts the 413 in the API schema.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from django.conf import settings
from django.urls import NoReverseMatch, reverse

from documents.api.views import MULTIPART_SLACK_BYTES

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: URL names of the views that take a file upload (a multipart POST), capped by DOCUMENT_MAX_UPLOAD_BYTES.
UPLOAD_ROUTES = ("document-list",)

_DISCONNECT: Message = {"type": "http.disconnect"}


def _megabytes(limit: int) -> str:
    return f"{limit / 1024 / 1024:g} MB"


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value)
    return None


def _upload_paths() -> set[str]:
    paths = set()
    for name in UPLOAD_ROUTES:
        try:
            paths.add(reverse(name))
        except NoReverseMatch:  # the route's app is not installed
            continue
    return paths


def default_cap() -> int:
    """The cap of any body that is not an upload (``REQUEST_MAX_BODY_BYTES``)."""
    return int(settings.REQUEST_MAX_BODY_BYTES)


def upload_cap() -> int:
    """The cap of a multipart upload: ``DOCUMENT_MAX_UPLOAD_BYTES`` and the framing the upload view allows."""
    return int(settings.DOCUMENT_MAX_UPLOAD_BYTES) + MULTIPART_SLACK_BYTES


def cap_for(scope: Scope) -> tuple[int, str]:
    """The body cap of this request, and its description for the 413 (which limit, in MB)."""
    content_type = (_header(scope, b"content-type") or b"").lower()
    path = scope.get("path", "")
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    if scope.get("method") == "POST" and content_type.startswith(b"multipart/form-data") and path in _upload_paths():
        return upload_cap(), f"the upload is over the {settings.DOCUMENT_MAX_UPLOAD_MB} MB limit"
    cap = default_cap()
    return cap, f"the request body is over the {_megabytes(cap)} limit"


async def refuse(send: Send, detail: str) -> None:
    """Answer 413 with ``{"detail": ...}`` and close the connection afterwards."""
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _CountedBody:
    """One request's ``receive``/``send``, counting the body and cutting it off past its cap."""

    def __init__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self.scope = scope
        self._receive = receive
        self._send = send
        self.received = 0
        self.cap = default_cap()
        self.detail = ""
        self.cap_is_final = False
        self.response_started = False
        self.cut_off = False

    async def receive(self) -> Message:
        if self.cut_off:
            return _DISCONNECT
        message = await self._receive()
        if message["type"] != "http.request":
            return message
        self.received += len(message.get("body", b""))
        if self.received > self.cap and not self.cap_is_final:
            # Past the small cap: only now is it worth asking whether this is an upload.
            self.cap, self.detail = cap_for(self.scope)
            self.cap_is_final = True
        if self.received > self.cap:
            self.cut_off = True
            if not self.response_started:
                await refuse(self._send, self.detail)
            return _DISCONNECT
        return message

    async def send(self, message: Message) -> None:
        if self.cut_off:
            return  # the 413 has been sent; the application answers a client that is gone
        if message["type"] == "http.response.start":
            self.response_started = True
        await self._send(message)


class BodyLimit:
    """ASGI middleware: requests whose body is over its cap get 413 before the body is read."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > default_cap():
            cap, detail = cap_for(scope)
            if int(declared) > cap:
                await refuse(send, detail)
                return
        # Counted even when a length is announced: the server enforces it, but the count costs nothing.
        body = _CountedBody(scope, receive, send)
        await self.app(scope, body.receive, body.send)


def schema_payload_too_large(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular post-processing hook: every operation that takes a body may answer 413."""
    components = result.setdefault("components", {}).setdefault("schemas", {})
    components["PayloadTooLarge"] = {
        "type": "object",
        "properties": {"detail": {"type": "string", "description": "which limit the body is over"}},
        "required": ["detail"],
    }
    too_large = {
        "description": (
            "The request body is over its cap (REQUEST_MAX_BODY_MB; uploads DOCUMENT_MAX_UPLOAD_MB), "
            "refused before it is read."
        ),
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PayloadTooLarge"}}},
    }
    for operations in result.get("paths", {}).values():
        for method, operation in operations.items():
            if method in ("post", "put", "patch") or "requestBody" in operation:
                operation.setdefault("responses", {}).setdefault("413", too_large)
    return result
