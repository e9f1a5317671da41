from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.documents import pdfs
from tests.factories import DocumentFactory


@pytest.fixture(autouse=True)
def media_root(settings: Any, tmp_path: Path) -> Path:
    """Every documents test stores its files in its own directory."""
    root = tmp_path / "media"
    root.mkdir()
    settings.MEDIA_ROOT = root
    return root


@pytest.fixture
def document_for(db: None) -> Callable[..., Any]:
    """A stored document for a user, with the given PDF bytes and page count."""

    def make(owner: Any, data: bytes, pages: int = 1, **fields: Any) -> Any:
        return DocumentFactory(owner=owner, file__data=data, page_count=pages, **fields)

    return make


@pytest.fixture
def scanned_pages() -> Callable[..., bytes]:
    """An image-only PDF of ``count`` pages; page n carries ``pdfs.sample_words(words, seed=n)``."""

    def make(count: int, words: int = 36, tmp: Path | None = None) -> bytes:
        import tempfile

        with tempfile.TemporaryDirectory() as scratch:
            path = Path(scratch) / "scan.pdf"
            pdfs.image_pdf(path, [pdfs.sample_words(words, seed=n) for n in range(1, count + 1)])
            return path.read_bytes()

    return make
