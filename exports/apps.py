from __future__ import annotations

from django.apps import AppConfig


class ExportsConfig(AppConfig):
    name = "exports"
    verbose_name = "Exports"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the csv-export and weekly-job-metrics job types.
        from exports import job_types  # noqa: F401
        from exports.services import delete_expired_exports
        from jobs.ops.scheduling import register_cleanup

        # The monthly cleanup job deletes expired export files.
        register_cleanup("expired-exports", delete_expired_exports)

        from jobs.worker.isolation import preload_in_children

        # Every export writes its file in a child: the forkserver imports the
        # writer and psycopg once instead of each child (the writer imports
        # psycopg only when it runs; importing it cost each export ~0.12 s).
        preload_in_children("psycopg", "exports.writers", warm_for_queue="csv-export")
