"""Files through the storage API on both backends: local copies for tools, storing, streaming downloads."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import AsyncRequestFactory, RequestFactory

from jobs.core.files import CHUNK_BYTES, local_copy, save_local_file
from jobs.web.downloads import stored_file_response

#: Three whole chunks and a bit: a download must arrive in several pieces.
CONTENT = bytes(range(256)) * (3 * CHUNK_BYTES // 256) + b"tail"


@pytest.fixture
def media_root(settings, tmp_path: Path) -> Path:
    root = tmp_path / "media"
    root.mkdir()
    settings.MEDIA_ROOT = root
    return root


@pytest.fixture(params=["file-system", "s3"])
def backend(request, media_root: Path) -> str:
    """Each test runs on the local file system and on the S3 server."""
    if request.param == "s3":
        request.getfixturevalue("s3_bucket")
    return str(request.param)


def test_local_copy_on_the_file_system_is_the_stored_file_itself(media_root):
    name = default_storage.save("documents/a.pdf", ContentFile(CONTENT))
    with local_copy(default_storage, name) as path:
        assert path == media_root / name
    assert (media_root / name).exists()


def test_local_copy_from_s3_is_a_scratch_file_removed_after_the_block(s3_bucket, media_root):
    name = default_storage.save("documents/a.pdf", ContentFile(CONTENT))
    with local_copy(default_storage, name) as path:
        assert path.read_bytes() == CONTENT
        assert not path.is_relative_to(media_root)
    assert not path.exists()
    assert not path.parent.exists()


def test_local_copy_of_a_file_not_stored_raises_file_not_found(backend):
    with pytest.raises(FileNotFoundError), local_copy(default_storage, "documents/missing.pdf"):
        pass


def test_a_local_file_is_stored_under_its_name_with_its_bytes(backend, tmp_path):
    local = tmp_path / "made.csv"
    local.write_bytes(CONTENT)
    name = save_local_file(default_storage, "exports/made.csv", local)
    assert name == "exports/made.csv"
    assert default_storage.size(name) == len(CONTENT)
    with default_storage.open(name, "rb") as handle:
        assert handle.read() == CONTENT


def _collect(response) -> list[bytes]:
    async def collect() -> list[bytes]:
        return [chunk async for chunk in response.streaming_content]

    # In a thread of its own, as a server's event loop would: an earlier test
    # (Playwright, Channels) may have left an event loop set in this thread.
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, collect()).result()


def test_a_download_under_asgi_streams_chunks_from_an_asynchronous_iterator(backend):
    # Given a stored file of several chunks
    name = default_storage.save("exports/big.csv", ContentFile(CONTENT))
    # When the web process answers an ASGI request for it
    request = AsyncRequestFactory().get("/download")
    response = stored_file_response(
        request, default_storage, name, content_type="text/csv", filename="big.csv", as_attachment=True
    )
    # Then Django can send it as it is read (an asynchronous body: no buffering under ASGI), chunk by chunk
    assert response.is_async
    chunks = _collect(response)
    assert len(chunks) == 4 and max(len(chunk) for chunk in chunks) <= CHUNK_BYTES
    assert b"".join(chunks) == CONTENT
    assert response["Content-Length"] == str(len(CONTENT))
    assert response["Content-Type"] == "text/csv"
    assert response["Content-Disposition"] == 'attachment; filename="big.csv"'


def test_a_download_under_wsgi_streams_from_a_plain_iterator(backend):
    name = default_storage.save("exports/big.csv", ContentFile(CONTENT))
    response = stored_file_response(
        RequestFactory().get("/download"),
        default_storage,
        name,
        content_type="text/csv",
        filename="big.csv",
        as_attachment=True,
    )
    # (An asynchronous body would be collected whole into a list under WSGI.)
    assert not response.is_async
    assert b"".join(response.streaming_content) == CONTENT
