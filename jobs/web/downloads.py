"""Stream a stored file to the client without the web process holding it whole.

A view checks who may see the row first (owner or staff), then answers
with ``stored_file_response``. Under ASGI, Django buffers a synchronous
iterator whole before sending it ("StreamingHttpResponse must consume
synchronous iterators"), so there the body is an asynchronous iterator that
reads one chunk at a time in a thread. Under WSGI (the test client, a WSGI
server) it is the reverse: an asynchronous iterator would be collected
into a list, so the body stays a plain iterator over the stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import IO, Any

from django.core.files.storage import Storage
from django.http import StreamingHttpResponse
from django.utils.http import content_disposition_header

from jobs.core.files import CHUNK_BYTES, open_stream


def _chunks(stream: IO[bytes]) -> Iterator[bytes]:
    try:
        while chunk := stream.read(CHUNK_BYTES):
            yield chunk
    finally:
        stream.close()


async def _chunks_async(stream: IO[bytes]) -> AsyncIterator[bytes]:
    # Django closes this generator (aclosing) when the client goes away, so the stream is closed too.
    try:
        while chunk := await asyncio.to_thread(stream.read, CHUNK_BYTES):
            yield chunk
    finally:
        await asyncio.to_thread(stream.close)


def served_over_asgi(request: Any) -> bool:
    """True when the request came through the ASGI handler (a DRF Request passes its attributes on)."""
    return getattr(request, "scope", None) is not None


def stored_file_response(
    request: Any,
    storage: Storage,
    name: str,
    *,
    content_type: str,
    filename: str,
    as_attachment: bool,
) -> StreamingHttpResponse:
    """The stored file ``name`` as a streamed response; FileNotFoundError when it is not stored."""
    stream, size = open_stream(storage, name)
    body: Iterator[bytes] | AsyncIterator[bytes]
    body = _chunks_async(stream) if served_over_asgi(request) else _chunks(stream)
    response = StreamingHttpResponse(body, content_type=content_type)
    if size is not None:
        response["Content-Length"] = str(size)
    disposition = content_disposition_header(as_attachment, filename)
    if disposition:
        response["Content-Disposition"] = disposition
    return response
