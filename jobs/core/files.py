"""Files through Django's storage API, whichever backend ``STORAGES["default"]`` names.

The web host and the worker hosts share files only through the storage
(the local file system on one host, S3-compatible object storage across
hosts), never through a path. Three helpers cover what the jobs need:

* ``local_copy``: a stored file as a path on this host, for the tools that
  want one (poppler, tesseract). With the file system storage it is the
  file itself; otherwise the file is streamed into the job's scratch
  directory and deleted afterwards.
* ``save_local_file``: a file made on this host (a thumbnail, an export)
  stored under a name; the storage streams it (FileSystemStorage copies in
  chunks, S3 uploads in parts).
* ``open_stream``: a stored file as a readable stream that fetches as it is
  read, for downloads.

Nothing here reads a whole file into memory.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any

from django.core.files import File
from django.core.files.storage import FileSystemStorage, Storage

from jobs.core.context import current_job

#: Bytes per read when copying or streaming a stored file.
CHUNK_BYTES = 256 * 1024


def local_path(storage: Storage, name: str) -> Path | None:
    """The file's own path when the storage keeps files on this host's disk, else None."""
    if isinstance(storage, FileSystemStorage):
        return Path(storage.path(name))
    return None


@contextlib.contextmanager
def scratch_dir(purpose: str) -> Iterator[Path]:
    """A private temporary directory for this piece of work, removed with everything in it.

    It lives under the host's TMPDIR (never a shared path) and its name
    carries the running job's id, so a leftover after a kill -9 says whose it was.
    """
    running = current_job()
    prefix = f"conveyor-{purpose}-" + (f"{running.job_id[:8]}-" if running else "")
    with tempfile.TemporaryDirectory(prefix=prefix) as directory:
        yield Path(directory)


def _s3_key(storage: Any, name: str) -> str | None:
    """The object key of ``name`` when the storage is django-storages' S3 backend, else None."""
    if getattr(storage, "bucket_name", None) is None or not hasattr(storage, "_normalize_name"):
        return None
    from storages.utils import clean_name

    return str(storage._normalize_name(clean_name(name)))


def open_stream(storage: Storage, name: str) -> tuple[IO[bytes], int | None]:
    """A binary stream of a stored file that fetches as it is read, and its size when known.

    django-storages' S3 file object downloads the whole object (into memory,
    unless ``max_memory_size`` is set) before its first ``read``, so S3 reads
    go through the GetObject body, which reads from the connection as asked.
    Raises FileNotFoundError when the file is not stored.
    """
    key = _s3_key(storage, name)
    if key is not None:
        from botocore.exceptions import ClientError

        try:
            answer = storage.bucket.Object(key).get()  # type: ignore[attr-defined]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                raise FileNotFoundError(f"no stored file {name!r}") from None
            raise
        return answer["Body"], answer.get("ContentLength")
    handle = storage.open(name, "rb")
    try:
        size = os.fstat(handle.fileno()).st_size
    except (AttributeError, OSError, ValueError):
        size = None
    return handle, size


@contextlib.contextmanager
def local_copy(storage: Storage, name: str, directory: Path | None = None) -> Iterator[Path]:
    """A stored file as a path on this host, for as long as the block runs.

    With the file system storage this is the stored file itself (do not
    modify it). Otherwise the file is streamed into ``directory`` (by
    default a scratch directory of its own) and deleted when the block ends.
    Raises FileNotFoundError when the file is not stored.
    """
    direct = local_path(storage, name)
    if direct is not None:
        if not direct.is_file():
            raise FileNotFoundError(f"no stored file {name!r}")
        yield direct
        return
    with contextlib.ExitStack() as stack:
        target_dir = directory if directory is not None else stack.enter_context(scratch_dir("copy"))
        target = target_dir / f"{uuid.uuid4().hex[:8]}-{PurePosixPath(name).name}"
        try:
            stream, _ = open_stream(storage, name)
            with contextlib.closing(stream), open(target, "wb") as out:
                shutil.copyfileobj(stream, out, CHUNK_BYTES)
            yield target
        finally:
            target.unlink(missing_ok=True)


def save_local_file(storage: Storage, name: str, path: Path) -> str:
    """Store the local file ``path`` under ``name``; returns the name the storage chose.

    The storage reads the file in chunks (FileSystemStorage copies it, S3
    uploads it in parts): it is never held whole in memory. The name may
    differ from ``name`` when the file system storage already holds one.
    """
    with open(path, "rb") as handle:
        return storage.save(name, File(handle, name=PurePosixPath(name).name))


def stored_size(storage: Storage, name: str) -> int | None:
    """The size of a stored file, or None when it is not stored (one request on S3)."""
    try:
        return int(storage.size(name))
    except (FileNotFoundError, OSError):
        return None
