from __future__ import annotations

from django.apps import AppConfig


class ExportsConfig(AppConfig):
    name = "exports"
    verbose_name = "Exports"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported once the models are loaded: registers the csv-export and weekly-job-metrics job types.
        from exports.job_types import CSV_EXPORT
        from exports.notifications import REPORT_LINK_TITLE, weekly_analytics_url
        from exports.services import delete_expired_exports
        from jobs.public import (
            preload_in_children,
            register_alert_rule,
            register_cleanup,
            register_report_link,
            timed_out_rule,
        )

        # The daily expire-exports job deletes expired export files; the monthly cleanup
        # does too, for a database where staff paused that schedule.
        register_cleanup("expired-exports", delete_expired_exports)
        # The weekly Slack report links the week's analytics CSV (its admin page).
        register_report_link(REPORT_LINK_TITLE, weekly_analytics_url)
        register_alert_rule(timed_out_rule("export_timeout", "Export timed out", CSV_EXPORT.name, what="exports"))

        # Every export writes its file in a child: the forkserver imports the
        # writer and psycopg once instead of each child (the writer imports
        # psycopg only when it runs; importing it cost each export ~0.12 s).
        preload_in_children("psycopg", "exports.writers", warm_for_queue=CSV_EXPORT.queue)
