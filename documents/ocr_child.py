"""pdf2image and pytesseract calls, made inside a killable child process.

``documents.pdf`` runs these functions through the platform's ``run_in_child``.
The child leads its own process group, so the pdfinfo, pdftoppm and tesseract
processes that pdf2image and pytesseract start are in it: a time limit or a
cancel kills them with the child, and they inherit its memory and CPU limits.
Nothing here needs Django (settings arrive as arguments), and only small
values go in and out: paths, page numbers, text, and a readable error
instead of an exception for what a retry may fix.

Speed (DEPENDENCY-NOTES): page images go from pdftoppm to tesseract as PGM
files whose path pytesseract hands straight to tesseract (a PNG round trip
halved throughput), tesseract runs single-threaded (``OMP_THREAD_LIMIT=1``,
one per worker slot), and a call never converts more than a page range.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any, ClassVar

import pytesseract
from pdf2image import convert_from_path
from pdf2image import pdf2image as pdf2image_module
from pdf2image.exceptions import PDFPageCountError, PDFPopplerTimeoutError, PDFSyntaxError


class _ExitRecordingPopen(subprocess.Popen):  # type: ignore[type-arg]
    """pdf2image's Popen, remembering how each poppler tool exited (pdf2image does not look)."""

    exits: ClassVar[list[tuple[str, int, bytes]]] = []

    def communicate(self, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
        out, err = super().communicate(*args, **kwargs)
        command = self.args[0] if isinstance(self.args, (list, tuple)) else self.args
        self.exits.append((Path(str(command)).name, self.returncode, err or b""))
        return out, err


def _describe_exit(tool: str, status: int, cpu_limit_s: int | None, stderr: bytes | str = b"") -> str:
    if status == -signal.SIGXCPU and cpu_limit_s:
        how = f"used more than its {cpu_limit_s} s CPU limit"
    elif status == -signal.SIGKILL:
        how = "was killed"
    elif status < 0:
        how = f"died of signal {signal.Signals(-status).name}"
    else:
        how = f"failed (exit {status})"
    if isinstance(stderr, bytes):
        stderr = stderr.decode(errors="replace")
    detail = " ".join(stderr.strip().splitlines()[-3:])[-300:]
    return f"{tool} {how}" + (f": {detail}" if detail else "")


def _why_missing(cpu_limit_s: int | None) -> str:
    for tool, status, stderr in reversed(_ExitRecordingPopen.exits):
        if tool == "pdftoppm" and status != 0:
            return _describe_exit(tool, status, cpu_limit_s, stderr)
    return "pdftoppm produced no image"


def _poppler_failure(exc: Exception, timeout_s: float) -> str:
    if isinstance(exc, PDFPopplerTimeoutError):
        return f"pdftoppm took longer than {timeout_s} s"
    if isinstance(exc, PDFPageCountError):
        return f"pdfinfo failed: {str(exc).strip()[-300:]}"
    return f"pdftoppm failed: {str(exc).strip()[-300:]}"


def _page_number(image: Path, prefix: str) -> int | None:
    """The page number in pdftoppm's ``<prefix>-<page>.<ext>`` name (zero-padded), if it is ours."""
    name, _, number = image.stem.rpartition("-")
    return int(number) if name == prefix and number.isdigit() else None


def render_page_range(
    pdf_path: str, first: int, last: int, dpi: int, out_dir: str, timeout_s: float, cpu_limit_s: int | None
) -> tuple[dict[int, str], str]:
    """Rasterise pages ``first``..``last`` to grayscale PGM files in ``out_dir``.

    Returns the image path of each page drawn and, when a page is missing, why.
    """
    prefix = f"p{first}"
    # Only in this child process, which ends after this call.
    pdf2image_module.Popen = _ExitRecordingPopen  # type: ignore[misc]
    try:
        paths = convert_from_path(
            pdf_path,
            dpi=dpi,
            first_page=first,
            last_page=last,
            grayscale=True,
            fmt="ppm",  # with grayscale: PGM, which tesseract reads without decoding a PNG
            output_folder=out_dir,
            # A generator is used as is; a string would get pdf2image's own counter appended.
            output_file=(name for name in [prefix]),
            paths_only=True,
            timeout=math.ceil(timeout_s),
        )
    except (PDFPopplerTimeoutError, PDFPageCountError, PDFSyntaxError) as exc:
        return {}, _poppler_failure(exc, timeout_s)
    rendered: dict[int, str] = {}
    for path in paths:
        number = _page_number(Path(str(path)), prefix)  # paths_only: strings, not images
        if number is not None and first <= number <= last:
            rendered[number] = str(path)
    missing = [number for number in range(first, last + 1) if number not in rendered]
    if not missing:
        return rendered, ""
    pages = f"page {missing[0]}" if len(missing) == 1 else f"pages {missing[0]}-{missing[-1]}"
    return rendered, f"{_why_missing(cpu_limit_s)} ({pages} missing)"


def _mean_confidence(tsv: str) -> float | None:
    confidences = []
    for line in tsv.splitlines()[1:]:
        fields = line.split("\t")
        if len(fields) == 12 and fields[11].strip():
            try:
                confidence = float(fields[10])
            except ValueError:
                continue
            if confidence >= 0:
                confidences.append(confidence)
    return round(sum(confidences) / len(confidences), 1) if confidences else None


def read_page_image(
    image: str, language: str, timeout_s: float, cpu_limit_s: int | None
) -> tuple[str, float | None, str]:
    """OCR one page image with a single-threaded tesseract: (text, mean word confidence, error)."""
    # One tesseract per worker slot is ~4x faster than one using every core (DEPENDENCY-NOTES);
    # pytesseract starts tesseract with this process's environment.
    os.environ["OMP_THREAD_LIMIT"] = "1"
    # pytesseract's output files go next to the image, in the scratch directory the parent
    # removes, so that a child killed mid-page leaves nothing behind in /tmp.
    tempfile.tempdir = str(Path(image).parent)
    try:
        # One tesseract run for both outputs (txt and tsv), fed the image file as it is.
        text, tsv = pytesseract.run_and_get_multiple_output(
            image,
            extensions=["txt", "tsv"],
            lang=language,
            timeout=timeout_s,
        )
    except pytesseract.TesseractError as exc:
        return "", None, _describe_exit("tesseract", exc.status, cpu_limit_s, str(exc.message))
    except RuntimeError as exc:
        if "timeout" not in str(exc):
            raise
        return "", None, f"tesseract took longer than {timeout_s} s"
    return str(text).strip(), _mean_confidence(str(tsv)), ""


def read_text_layer(
    pdf_path: str, first: int, last: int, max_page_bytes: int, timeout_s: float, cpu_limit_s: int | None
) -> tuple[dict[int, str], list[int], str]:
    """pdftotext's text of pages ``first``..``last``, each page cut at ``max_page_bytes``.

    Returns (text per page, the pages that were cut, error). The output is
    read as it comes, so this process never holds more than the kept text
    and one read. Past a budget of four times what may be kept, pdftotext
    is stopped: the page being read keeps its cut text, and the pages after
    it are left out (the caller OCRs them).
    """
    pages = last - first + 1
    budget = 4 * pages * max_page_bytes
    # A fixed argument list and no shell; poppler's tools come from PATH, as pdf2image finds them.
    proc = subprocess.Popen(  # noqa: S603
        ["pdftotext", "-f", str(first), "-l", str(last), "-enc", "UTF-8", pdf_path, "-"],  # noqa: S607
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    stdout, stderr = proc.stdout, proc.stderr
    if stdout is None or stderr is None:  # never: both are pipes
        raise RuntimeError("pdftotext was started without its pipes")
    stderr_tail: list[bytes] = []
    drain = threading.Thread(target=_keep_tail, args=(stderr, stderr_tail), daemon=True)
    drain.start()
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        proc.kill()

    timer = threading.Timer(timeout_s, expire)
    timer.start()
    kept: list[bytearray] = [bytearray()]
    cut: set[int] = set()
    read = 0
    stopped = False
    try:
        while chunk := stdout.read(1 << 16):
            read += len(chunk)
            for index, piece in enumerate(chunk.split(b"\f")):
                if index:
                    kept.append(bytearray())
                current = kept[-1]
                room = max_page_bytes - len(current)
                if len(piece) > room:
                    cut.add(first + len(kept) - 1)
                    piece = piece[: max(room, 0)]
                current += piece
            if read > budget:
                stopped = True
                proc.kill()
                break
    finally:
        stdout.close()
        status = proc.wait()
        timer.cancel()
        drain.join(timeout=5)
    if expired.is_set() and not stopped:
        return {}, [], f"pdftotext took longer than {timeout_s} s"
    if stopped:
        # The page being read when the budget ran out keeps its cut text; the rest are left out.
        cut.add(first + len(kept) - 1)
    elif status != 0:
        return {}, [], _describe_exit("pdftotext", status, cpu_limit_s, b"".join(stderr_tail))
    texts = {first + index: bytes(text).decode("utf-8", errors="replace") for index, text in enumerate(kept[:pages])}
    return texts, sorted(number for number in cut if number <= last), ""


def _keep_tail(stream: Any, tail: list[bytes], keep: int = 4096) -> None:
    """Read ``stream`` to its end, keeping its last ``keep`` bytes in ``tail``."""
    kept = b""
    while chunk := stream.read(1 << 14):
        kept = (kept + chunk)[-keep:]
    stream.close()
    tail.append(kept)
