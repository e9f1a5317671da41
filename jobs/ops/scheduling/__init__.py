"""Recurring jobs: schedules whose fires enqueue jobs exactly once, and the cleanup hooks.

Kept import-light: ``jobs.models`` imports ``jobs.models.schedule`` and
domain apps call ``register_cleanup`` from their ``ready()``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_cleanup_hooks: dict[str, Callable[[], Any]] = {}


def register_cleanup(name: str, hook: Callable[[], Any]) -> None:
    """Have the monthly cleanup job call ``hook()`` (a domain app's housekeeping, idempotent)."""
    _cleanup_hooks[name] = hook


def cleanup_hooks() -> dict[str, Callable[[], Any]]:
    return dict(_cleanup_hooks)
