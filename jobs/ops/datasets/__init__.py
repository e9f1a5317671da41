"""Datasets the exports app can export: the vocabulary and registry (``spec``) and the platform's own.

Importing the package registers the platform's datasets over jobs
(``jobs.ops.datasets.jobs``); domain apps register theirs through
``jobs.public.register_dataset`` from their ``ready()``.
"""

from __future__ import annotations

from jobs.ops.datasets import jobs as _platform_datasets  # noqa: F401 - registers "jobs" and "job-metrics"
