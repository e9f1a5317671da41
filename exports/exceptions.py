"""Errors of the exports app; the permanent ones are never retried."""

from __future__ import annotations

from jobs.core.exceptions import PermanentJobError


class InvalidExportQuery(PermanentJobError):
    """A dataset, filter, field or ordering that the whitelist does not allow."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class ExportTooLarge(PermanentJobError):
    """The export needed more memory than its ceiling and was stopped."""


class ExportNotRunnable(PermanentJobError):
    """The export is already finished (or gone): there is nothing to run."""
