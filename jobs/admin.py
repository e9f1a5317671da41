"""Django's admin discovers ``<app>.admin``: the platform's admin pages live in ``jobs.web.admin``."""

from jobs.web.admin import alerts, audit, jobs, retired, schedules, shares  # noqa: F401
