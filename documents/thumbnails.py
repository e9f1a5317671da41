"""Thumbnails: a parent job fans out one child per document, each renders that document's first page.

The parent (``thumbnails``) reports "3 of 10 documents" as its children end;
a broken document fails its own child only, and the type's
``on_children_done`` hook (``outcomes``) keeps that child's error in the
parent's result.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from django.conf import settings
from PIL import Image

from documents import pdf
from documents.job_types import THUMBNAILS_DOCUMENT
from documents.services import load_document
from jobs.public import AwaitChildren, ChildJob, fan_out, progress


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


def make_document_thumbnails(
    document_id: str, sizes: Sequence[int], image_format: str = "png", force: bool = False
) -> dict[str, Any]:
    """Render page 1 once at the largest size and downscale it to every size that is missing."""
    document = load_document(document_id)
    wanted = sorted({int(size) for size in sizes}, reverse=True)
    missing = [size for size in wanted if force or document.thumbnail_path(size) is None]
    if not missing:
        return {"document_id": document_id, "made": [], "skipped": wanted}
    pdf.inspect_pdf(document.path)
    # Rendering is bounded by -scale-to; an embedded image is decoded whole, so refuse a bomb first.
    pdf.check_page_pixels(1, None, pdf.image_sizes(document.path, 1, 1).get(1, []), settings.OCR_DPI)
    progress(10, "Rendering page 1")
    target = document.thumbnail_dir
    target.mkdir(parents=True, exist_ok=True)
    extension = "webp" if image_format == "webp" else "png"
    with tempfile.TemporaryDirectory(prefix="conveyor-thumb-") as scratch:
        rendered = pdf.render_first_page(document.path, missing[0], Path(scratch))
        with Image.open(rendered) as page:
            page.load()
            for size in missing:
                thumbnail = page.copy()
                thumbnail.thumbnail((size, size), Image.Resampling.LANCZOS)
                final = target / f"{size}.{extension}"
                partial = target / f".{size}.{extension}.partial"
                thumbnail.save(partial, format=extension.upper())
                os.replace(partial, final)
                for other in ("png", "webp"):
                    if other != extension:
                        (target / f"{size}.{other}").unlink(missing_ok=True)
    progress(100, "Thumbnails made")
    return {"document_id": document_id, "made": missing, "skipped": [s for s in wanted if s not in missing]}
