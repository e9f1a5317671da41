"""Poppler and tesseract, each run in a killable child process under limits.

OCR's rasterising and reading go through pdf2image and pytesseract inside
the platform's ``run_in_child`` (the functions of ``documents.ocr_child``),
whose process group holds the pdftoppm and tesseract they start. The quick
poppler calls (pdfinfo, pdfimages, pdftotext, the thumbnail's one small
render) run through its ``run_command``: a child interpreter would
cost several times the call itself (a thumbnail render took ~35 ms directly,
~190 ms through ``run_in_child``). Either way a job's time limit or cancel
kills the tool (and the worker thread is never blocked in C code), and each
tool runs under an address-space and CPU-time limit so that a hostile PDF
(absurd page size, decompression bomb) fails with a reason instead of
exhausting the machine. Page sizes and embedded image sizes are checked
against a pixel cap before anything is rendered; a page that cannot be
measured is not rendered either (the check fails closed). A PDF over
``DOCUMENT_MAX_PAGES`` is refused before any page row exists, and the text
layer is read in a child under the memory limit, each page cut at
``OCR_TEXT_LAYER_MAX_KB``, so a huge text layer never reaches the worker.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from documents import ocr_child
from documents.exceptions import (
    CorruptPdf,
    EmptyFile,
    EncryptedPdf,
    NotAPdf,
    PageTooLarge,
    PdfHasNoPages,
    TooManyPages,
)
from jobs.public import ChildProcessFailed, run_command, run_in_child

logger = logging.getLogger(__name__)

PDF_MAGIC = b"%PDF-"
#: The PDF header may follow up to 1 KB of junk (PDF 1.7, annex H).
HEADER_WINDOW = 1024
POINTS_PER_INCH = 72.0

_PAGES = re.compile(rb"^Pages:\s+(\d+)", re.MULTILINE)
_PAGE_SIZE = re.compile(rb"^Page\s+(\d+)\s+size:\s+([\d.]+)\s+x\s+([\d.]+)\s+pts", re.MULTILINE)
_SINGLE_PAGE_SIZE = re.compile(rb"^Page size:\s+([\d.]+)\s+x\s+([\d.]+)\s+pts", re.MULTILINE)
_PAGE_ROT = re.compile(rb"^Page\s+(\d+)\s+rot:\s+(\d+)", re.MULTILINE)


@dataclass(frozen=True)
class PdfInfo:
    pages: int


def looks_like_pdf(head: bytes) -> bool:
    """True when the first bytes carry a PDF header (the name of the file does not count)."""
    return PDF_MAGIC in head[:HEADER_WINDOW]


def _run(args: Sequence[str], *, timeout_s: float | None = None) -> bytes:
    return run_command(
        args,
        timeout_s=timeout_s or settings.DOCUMENT_CHILD_TIMEOUT_S,
        memory_limit_mb=settings.DOCUMENT_CHILD_MEMORY_MB,
        cpu_limit_s=settings.DOCUMENT_CHILD_CPU_S,
    ).stdout


def inspect_pdf(path: Path) -> PdfInfo:
    """Page count of a PDF; raises a permanent error for what no retry can fix."""
    with open(path, "rb") as handle:
        head = handle.read(HEADER_WINDOW)
    if not head:
        raise EmptyFile("the file is empty (0 bytes)")
    if not looks_like_pdf(head):
        raise NotAPdf("the file is not a PDF: its content does not start with a PDF header")
    try:
        out = _run(["pdfinfo", str(path)], timeout_s=60)
    except ChildProcessFailed as exc:
        message = str(exc)
        if "Incorrect password" in message:
            raise EncryptedPdf("the PDF is encrypted with a password: upload it without one") from None
        if "Invalid page count 0" in message or "last page (0)" in message:
            raise PdfHasNoPages("the PDF has no pages") from None
        raise CorruptPdf(f"the PDF cannot be read (damaged or truncated): {_tail(message)}") from None
    match = _PAGES.search(out)
    if match is None:
        raise CorruptPdf("the PDF cannot be read: pdfinfo reported no page count")
    pages = int(match.group(1))
    if pages == 0:
        raise PdfHasNoPages("the PDF has no pages")
    if pages > settings.DOCUMENT_MAX_PAGES:
        raise TooManyPages(f"the PDF has {pages} pages; the limit is {settings.DOCUMENT_MAX_PAGES}")
    return PdfInfo(pages=pages)


def _tail(message: str) -> str:
    return message.split(": ", 1)[-1][-300:]


def page_sizes(path: Path, first: int, last: int) -> dict[int, tuple[float, float]]:
    """Width and height in points of pages ``first``..``last``."""
    out = _run(["pdfinfo", "-f", str(first), "-l", str(last), str(path)], timeout_s=60)
    sizes = {int(n): (float(w), float(h)) for n, w, h in _PAGE_SIZE.findall(out)}
    if not sizes and first == last:
        single = _SINGLE_PAGE_SIZE.search(out)
        if single:
            sizes[first] = (float(single.group(1)), float(single.group(2)))
    return sizes


def image_sizes(path: Path, first: int, last: int) -> dict[int, list[tuple[int, int]]]:
    """Pixel sizes of the images embedded in pages ``first``..``last`` (nothing is decoded).

    A pdfimages that fails, or answers without its table's header, raises
    ChildProcessFailed: an unmeasured page is never taken for an empty one.
    """
    out = _run(["pdfimages", "-list", "-f", str(first), "-l", str(last), str(path)], timeout_s=60)
    lines = out.decode(errors="replace").splitlines()
    if not lines or lines[0].split()[:3] != ["page", "num", "type"]:
        raise ChildProcessFailed("pdfimages answered without its list of images")
    found: dict[int, list[tuple[int, int]]] = {}
    for line in lines[2:]:
        fields = line.split()
        if len(fields) >= 5 and fields[0].isdigit() and fields[3].isdigit() and fields[4].isdigit():
            found.setdefault(int(fields[0]), []).append((int(fields[3]), int(fields[4])))
    return found


def check_page_pixels(
    number: int, size_pts: tuple[float, float] | None, images: list[tuple[int, int]], dpi: int
) -> None:
    """Refuse, before rendering, a page or embedded image over the pixel cap."""
    cap = settings.DOCUMENT_MAX_PAGE_PIXELS
    if size_pts is not None:
        width = size_pts[0] / POINTS_PER_INCH * dpi
        height = size_pts[1] / POINTS_PER_INCH * dpi
        if width * height > cap:
            raise PageTooLarge(
                f"page {number} is {size_pts[0]:.0f} x {size_pts[1]:.0f} pt: at {dpi} dpi it would be "
                f"{width * height / 1e6:.0f} megapixels, over the {cap / 1e6:.0f} megapixel cap"
            )
    for image_width, image_height in images:
        if image_width * image_height > cap:
            raise PageTooLarge(
                f"page {number} embeds a {image_width} x {image_height} image "
                f"({image_width * image_height / 1e6:.0f} megapixels, over the {cap / 1e6:.0f} megapixel "
                "cap): refused as a possible decompression bomb"
            )


def text_layer(path: Path, first: int, last: int) -> dict[int, str]:
    """The text layer of pages ``first``..``last`` (pdftotext; empty text for a scanned page).

    pdftotext runs in a child under the documents' memory and CPU limits,
    which reads its output as it comes and keeps at most
    ``OCR_TEXT_LAYER_MAX_KB`` of each page: the worker never holds more
    than that per page. A page left out (the child stopped reading) is
    OCRed like a scanned one.
    """
    texts, cut, error = run_in_child(
        ocr_child.read_text_layer,
        str(path),
        first,
        last,
        settings.OCR_TEXT_LAYER_MAX_KB * 1024,
        settings.DOCUMENT_CHILD_TIMEOUT_S,
        settings.DOCUMENT_CHILD_CPU_S,
        **_child_limits(),
    )
    if error:
        raise ChildProcessFailed(error)
    if cut:
        logger.warning("Text layer of %s cut at %s KB on pages %s", path.name, settings.OCR_TEXT_LAYER_MAX_KB, cut)
    return texts


def has_usable_text(text: str) -> bool:
    """Enough real characters to trust the text layer rather than OCR the page."""
    return sum(1 for char in text if char.isalnum()) >= settings.OCR_MIN_TEXT_LAYER_CHARS


def _child_limits() -> dict[str, int]:
    return {"memory_limit_mb": settings.DOCUMENT_CHILD_MEMORY_MB, "cpu_limit_s": settings.DOCUMENT_CHILD_CPU_S}


def render_pages(path: Path, first: int, last: int, dpi: int, out_dir: Path) -> dict[int, Path]:
    """Rasterise pages ``first``..``last`` to grayscale PGM files (what tesseract reads fastest).

    Pages that could not be drawn are left out; if none was, ChildProcessFailed says why.
    """
    rendered, error = run_in_child(
        ocr_child.render_page_range,
        str(path),
        first,
        last,
        dpi,
        str(out_dir),
        settings.DOCUMENT_CHILD_TIMEOUT_S,
        settings.DOCUMENT_CHILD_CPU_S,
        **_child_limits(),
    )
    if not rendered:
        raise ChildProcessFailed(error or f"pdftoppm produced no image for pages {first}-{last}")
    if error:
        logger.info("Rendering pages %s-%s of %s: %s", first, last, path.name, error)
    return {number: Path(image) for number, image in rendered.items()}


def recognise(image: Path, language: str) -> tuple[str, float | None]:
    """OCR one page image with a single-threaded tesseract: its text and mean word confidence."""
    text, confidence, error = run_in_child(
        ocr_child.read_page_image,
        str(image),
        language,
        settings.DOCUMENT_CHILD_TIMEOUT_S,
        settings.DOCUMENT_CHILD_CPU_S,
        **_child_limits(),
    )
    if error:
        raise ChildProcessFailed(error)
    return text, confidence


def render_first_page(path: Path, longest_side: int, out_dir: Path) -> Path:
    """The first page as a colour PPM whose longest side is ``longest_side`` pixels."""
    prefix = out_dir / "first"
    _run(
        [
            "pdftoppm",
            "-f",
            "1",
            "-l",
            "1",
            "-singlefile",
            "-scale-to",
            str(longest_side),
            str(path),
            str(prefix),
        ]
    )
    image = prefix.with_suffix(".ppm")
    if not image.exists():
        raise ChildProcessFailed("pdftoppm produced no image for page 1")
    return image
