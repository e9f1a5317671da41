from __future__ import annotations

from django.apps import AppConfig


class JobsConfig(AppConfig):
    name = "jobs"
    verbose_name = "Jobs"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        import dramatiq
        from django.conf import settings

        # The platform's own job types (canary, cleanup, the weekly report).
        from jobs.dispatch import canaries  # noqa: F401
        from jobs.ops import reports  # noqa: F401
        from jobs.ops.scheduling import job_types  # noqa: F401
        from jobs.worker import log_filters
        from jobs.worker.middleware.stack import install_platform_middleware

        install_platform_middleware(dramatiq.get_broker())
        log_filters.install()
        if settings.JOBS_LIVE_EVENTS:
            # Job events to WebSocket clients (jobs.web.realtime); off, jobs.state.events has no listener.
            from jobs.web.realtime import publisher

            publisher.install()
