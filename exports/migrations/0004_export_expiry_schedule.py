"""The daily "export expiry" schedule: exports past ``EXPORT_EXPIRY_DAYS`` lose their file the same night.

Until now only the monthly cleanup deleted them, so a file stayed up to a
month past its expiry. ``get_or_create`` leaves a row staff already made.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

HOUR = 3600

SCHEDULE: dict[str, Any] = {
    "name": "export expiry",
    "description": "Delete the files of exports past their expiry and mark them expired.",
    "cron": "30 0 * * *",
    "job_type": "expire-exports",
    "grace_seconds": 12 * HOUR,
}


def create_schedule(apps: Any, schema_editor: Any) -> None:
    Schedule = apps.get_model("jobs", "Schedule")
    Schedule.objects.get_or_create(name=SCHEDULE["name"], defaults=SCHEDULE)


def remove_schedule(apps: Any, schema_editor: Any) -> None:
    Schedule = apps.get_model("jobs", "Schedule")
    Schedule.objects.filter(name=SCHEDULE["name"]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("exports", "0003_export_staff_notified_at"),
        ("jobs", "0007_fewer_job_indexes"),
    ]

    operations = [migrations.RunPython(create_schedule, remove_schedule)]
