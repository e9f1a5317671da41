from __future__ import annotations

from django.apps import AppConfig


class CampaignsConfig(AppConfig):
    name = "campaigns"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported once the models are loaded: registers email-batch, its batches and email-digest,
        # and the deliveries dataset for exports.
        from campaigns import datasets, job_types, ops  # noqa: F401

        # The slow-sending alert rule and the weekly report's delivery-rate column.
        ops.register()
