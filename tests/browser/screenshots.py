"""Screenshots that browser tests keep under ``var/screenshots/<folder>/`` (overwritten by each run)."""

from __future__ import annotations

from typing import Any

from tests.workers import ROOT

SCREENSHOTS = ROOT / "var" / "screenshots"


def screenshot(page: Any, folder: str, name: str, selector: str | None = None) -> None:
    """The whole page (or one element) as ``var/screenshots/<folder>/<name>.png``."""
    directory = SCREENSHOTS / folder
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.png"
    if selector is None:
        page.screenshot(path=str(path), full_page=True)
    else:
        page.locator(selector).screenshot(path=str(path))
    print(f"screenshot: {path}")
