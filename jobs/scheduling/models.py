"""Import shim: migration ``jobs.0002_schedules`` names ``jobs.scheduling.models.default_grace_seconds``.

Schedules now live in ``jobs.models.schedule``; nothing else may import this module.
"""

from __future__ import annotations

from jobs.models.schedule import default_grace_seconds

__all__ = ["default_grace_seconds"]
