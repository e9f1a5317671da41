"""Thumbnails: a parent job fans out one child per document, each renders that document's first page.

The parent (``thumbnails``) reports "3 of 10 documents" as its children end;
a broken document fails its own child only, and the type's
``on_children_done`` hook (``outcomes``) keeps that child's error in the
parent's result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.conf import settings
from PIL import Image

from documents import pdf
from documents.job_types import THUMBNAILS_DOCUMENT
from documents.models import Document
from documents.services import document_on_disk, load_document
from jobs.public import (
    AwaitChildren,
    ChildJob,
    Fence,
    RunSuperseded,
    current_fence,
    fan_out,
    fenced,
    progress,
    save_local_file,
    scratch_dir,
)


def fan_out_thumbnails(
    document_ids: Sequence[str], sizes: Sequence[int], image_format: str, force: bool
) -> AwaitChildren:
    """One child job per document; the parent reports "3 of 10 documents"."""
    children = [
        ChildJob.of(
            THUMBNAILS_DOCUMENT,
            {"document_id": str(document_id), "sizes": list(sizes), "image_format": image_format, "force": force},
        )
        for document_id in document_ids
    ]
    return fan_out(children, unit="documents", progress_range=(0, 100))


def thumbnail_storage_name(document: Document, size: int, extension: str, fence: Fence | None = None) -> str:
    """Where a thumbnail is stored: per run in a worker, ``thumbnails/<id>/<size>.<job>-a<attempt>.<ext>``.

    A run whose job another worker took over (it was frozen, or cut off from
    Redis) may store its images when it wakes: under names of its own it can
    never overwrite the files of the run that took over (S3 replaces an
    object in place), nor those another job recorded, and the row names the
    files that won (``Document.record_thumbnails``, fenced); the stale run
    deletes its own. Outside a run, ``thumbnails/<id>/<size>.<ext>``.
    Maintenance reads the names from the row, never from the storage.
    """
    if fence is None:
        return f"thumbnails/{document.id.hex}/{size}.{extension}"
    run = f"{fence.job_id.replace('-', '')[:12]}-a{fence.attempt}"
    return f"thumbnails/{document.id.hex}/{size}.{run}.{extension}"


def make_document_thumbnails(
    document_id: str, sizes: Sequence[int], image_format: str = "png", force: bool = False
) -> dict[str, Any]:
    """Render page 1 once at the largest size and downscale it to every size that is missing.

    What is missing is read from the document's row, not asked of the
    storage. The images are made in the job's scratch directory, stored,
    and only then recorded on the row (a thumbnail it replaces is deleted
    after that), so a row never names a file that is not stored.
    """
    document = load_document(document_id)
    wanted = sorted({int(size) for size in sizes}, reverse=True)
    missing = [size for size in wanted if force or document.thumbnail_name(size) is None]
    if not missing:
        return {"document_id": document_id, "made": [], "skipped": wanted}
    extension = "webp" if image_format == "webp" else "png"
    storage = document.file.storage
    fence = current_fence()
    stored: dict[int, str] = {}
    with scratch_dir("thumbnails") as scratch, document_on_disk(document) as path:
        pdf.inspect_pdf(path)
        # Rendering is bounded by -scale-to; an embedded image is decoded whole, so refuse a bomb first.
        pdf.check_page_pixels(1, None, pdf.image_sizes(path, 1, 1).get(1, []), settings.OCR_DPI)
        progress(10, "Rendering page 1")
        rendered = pdf.render_first_page(path, missing[0], scratch)
        with Image.open(rendered) as page:
            page.load()
            for size in missing:
                thumbnail = page.copy()
                thumbnail.thumbnail((size, size), Image.Resampling.LANCZOS)
                local = scratch / f"{size}.{extension}"
                thumbnail.save(local, format=extension.upper())
                # S3 replaces an object in place; the file system storage picks a fresh
                # name when one is taken, and the old file goes once the row names the new.
                name = thumbnail_storage_name(document, size, extension, fence)
                stored[size] = save_local_file(storage, name, local)
    try:
        with fenced():  # the row names the files that won: only a run that still holds its job records
            replaced_names = Document.record_thumbnails(document_id, stored)
    except RunSuperseded:
        for name in stored.values():  # named for this run alone: no row names them
            storage.delete(name)
        raise
    for replaced in replaced_names:
        if replaced not in stored.values():
            storage.delete(replaced)
    progress(100, "Thumbnails made")
    return {"document_id": document_id, "made": missing, "skipped": [s for s in wanted if s not in missing]}
