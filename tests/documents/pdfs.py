"""PDFs generated for the tests and the benchmark, with known text.

Image-only pages are drawn with Pillow (a scan: no text layer); text-layer
pages are a small hand-written PDF with Helvetica text objects.
"""

from __future__ import annotations

import io
import random
import zlib
from functools import lru_cache
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

WORDS = (
    "invoice amount customer payment delivery address contract signature order number "
    "account balance report quarter revenue office meeting schedule project budget total "
    "market product service support window garden river mountain yellow purple orange "
    "silver market letter bridge castle forest island planet summer winter autumn spring"
).split()


def sample_words(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [rng.choice(WORDS) for _ in range(count)]


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", size)
    except OSError:
        return ImageFont.load_default(size=size)


def page_image(words: list[str], *, dpi: int = 150, per_line: int = 6) -> Image.Image:
    """A Letter-sized grayscale 'scan' carrying ``words`` in large print."""
    width, height = int(8.5 * dpi), int(11 * dpi)
    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    font = _font(int(dpi * 0.22))
    line_height = int(dpi * 0.4)
    y = int(dpi * 0.8)
    for start in range(0, len(words), per_line):
        draw.text((int(dpi * 0.8), y), " ".join(words[start : start + per_line]), fill=0, font=font)
        y += line_height
    return image


def image_pdf(path: Path, pages: list[list[str]], *, dpi: int = 150) -> Path:
    """An image-only PDF: one drawn page per word list."""
    images = [page_image(words, dpi=dpi) for words in pages]
    images[0].save(path, "PDF", resolution=float(dpi), save_all=True, append_images=images[1:])
    return path


def _pdf(objects: list[bytes]) -> bytes:
    """Serialise numbered objects (1-based, object 1 the catalog) with a correct xref table."""
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    for offset in offsets:
        out.write(b"%010d 00000 n \n" % offset)
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


def _escape(text: str) -> bytes:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)").encode("latin-1")


def text_pdf_bytes(pages: list[str], *, media_box: tuple[int, int] = (612, 792)) -> bytes:
    """A PDF whose pages carry a real text layer (Helvetica), one text per page."""
    count = len(pages)
    kids = " ".join(f"{3 + 2 * index} 0 R" for index in range(count)).encode()
    font_number = 3 + 2 * count
    objects: list[bytes] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [" + kids + b"] /Count %d >>" % count,
    ]
    for text in pages:
        content_number = len(objects) + 2
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %d %d] " % media_box
            + b"/Resources << /Font << /F1 %d 0 R >> >> /Contents %d 0 R >>" % (font_number, content_number)
        )
        lines = [text[i : i + 60] for i in range(0, len(text), 60)] or [""]
        stream = b"BT /F1 14 Tf 72 720 Td 18 TL " + b" ".join(b"(" + _escape(line) + b") '" for line in lines)
        stream += b" ET"
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    return _pdf(objects)


def text_pdf(path: Path, pages: list[str], **kwargs: object) -> Path:
    path.write_bytes(text_pdf_bytes(pages, **kwargs))  # type: ignore[arg-type]
    return path


def zero_page_pdf_bytes() -> bytes:
    return _pdf([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [] /Count 0 >>"])


def encrypted_pdf_bytes(password: str = "secret") -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(text_pdf_bytes(["locked text"]))))
    writer.encrypt(user_password=password, owner_password=password + "-owner", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


@lru_cache(maxsize=2)
def bomb_pdf_bytes(side: int = 20000) -> bytes:
    """A Letter page drawing a ``side`` x ``side`` gray image that inflates from almost nothing."""
    data = zlib.compress(b"\x00" * side * side, 9)
    stream = b"q 612 0 0 792 0 0 cm /Im1 Do Q"
    return _pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /XObject << /Im1 5 0 R >> >> /Contents 4 0 R >>",
            b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream",
            b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray " % (side, side)
            + b"/BitsPerComponent 8 /Filter /FlateDecode /Length %d >>\nstream\n" % len(data)
            + data
            + b"\nendstream",
        ]
    )


def merge_pdfs(*documents: bytes) -> bytes:
    """The pages of several PDFs, in order, as one PDF."""
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for data in documents:
        writer.append(PdfReader(io.BytesIO(data)))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def png_bytes() -> bytes:
    out = io.BytesIO()
    Image.new("L", (40, 40), 128).save(out, "PNG")
    return out.getvalue()
