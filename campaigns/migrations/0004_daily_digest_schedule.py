"""The "daily digest" default schedule, now made by campaigns (it was in ``jobs`` migration 0003).

A database migrated from the old tree already has the row: ``get_or_create``
leaves it, with whatever staff changed, as it is.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

HOUR = 3600

SCHEDULE: dict[str, Any] = {
    "name": "daily digest",
    "description": "Email batch to active users.",
    "cron": "0 8 * * *",
    "job_type": "email-digest",
    "grace_seconds": HOUR,
}


def create_schedule(apps: Any, schema_editor: Any) -> None:
    Schedule = apps.get_model("jobs", "Schedule")
    Schedule.objects.get_or_create(name=SCHEDULE["name"], defaults=SCHEDULE)


def remove_schedule(apps: Any, schema_editor: Any) -> None:
    Schedule = apps.get_model("jobs", "Schedule")
    Schedule.objects.filter(name=SCHEDULE["name"]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0003_campaign_status_failed"),
        ("jobs", "0007_fewer_job_indexes"),
    ]

    operations = [migrations.RunPython(create_schedule, remove_schedule)]
