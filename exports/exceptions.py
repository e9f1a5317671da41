"""Errors of the exports app; the permanent ones are never retried.

An invalid dataset, filter, field or ordering is the platform's
``InvalidDatasetQuery`` (``jobs.public``), raised where datasets are checked.
"""

from __future__ import annotations

from jobs.public import PermanentJobError, TransientJobError


class ExportTooLarge(PermanentJobError):
    """The export needed more memory than its ceiling (or more rows than a sheet holds) and was stopped."""


class ExportNotRunnable(PermanentJobError):
    """The export is already finished (or gone): there is nothing to run."""


class ExpiredExportsNotDeleted(TransientJobError):
    """The storage refused to delete some expired export files; the others were deleted, and the job is retried."""
