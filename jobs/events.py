"""Where job events go once written: the single hook live progress listens on."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

ProgressListener = Callable[[str, int, dict[str, Any]], None]
_listeners: list[ProgressListener] = []


def add_progress_listener(listener: ProgressListener) -> None:
    _listeners.append(listener)


def publish_progress(job_id: str, percent: int, data: dict[str, Any]) -> None:
    for listener in _listeners:
        try:
            listener(job_id, percent, data)
        except Exception:
            logger.warning("Progress listener %r failed", listener, exc_info=True)
