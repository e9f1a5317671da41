from __future__ import annotations

from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # The platform's own job types (canary; the weekly report, in reports), and the
        # Alert model with its read-only admin (jobs.alerts).
        from jobs import job_types, log_filters, reports  # noqa: F401
        from jobs.alerts import admin as alerts_admin  # noqa: F401

        log_filters.install()
        from django.conf import settings

        if settings.JOBS_LIVE_EVENTS:
            # Job events to WebSocket clients (jobs.realtime); off, jobs.events has no listener.
            from jobs.realtime import publisher

            publisher.install()
