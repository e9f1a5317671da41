from __future__ import annotations

from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "campaigns"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers email-batch and email-digest with the job platform.
        from campaigns import job_types, ops  # noqa: F401

        # The email rate alert's input and the weekly report's delivery-rate column.
        ops.register()
