"""The nightly "thumbnail maintenance" schedule, now the documents app's own (it was created by jobs 0003).

``get_or_create``: on a database where jobs 0003 created it already, the row
(and any edit staff made to it) is left as it is.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

SCHEDULE = {
    "name": "thumbnail maintenance",
    "description": "Regenerate missing thumbnails.",
    "cron": "0 2 * * *",
    "job_type": "thumbnail-maintenance",
    "grace_seconds": 6 * 3600,
}


def create_schedule(apps: Any, schema_editor: Any) -> None:
    Schedule = apps.get_model("jobs", "Schedule")
    Schedule.objects.get_or_create(name=SCHEDULE["name"], defaults=SCHEDULE)


def remove_schedule(apps: Any, schema_editor: Any) -> None:
    Schedule = apps.get_model("jobs", "Schedule")
    Schedule.objects.filter(name=SCHEDULE["name"]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("documents", "0001_initial"),
        ("jobs", "0007_fewer_job_indexes"),
    ]

    operations = [migrations.RunPython(create_schedule, remove_schedule)]
