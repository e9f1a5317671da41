"""The platform's default schedules, all in UTC; staff edit, pause and run them from the admin.

Only the platform's own: the monthly cleanup and one canary per queue. The
domain apps' schedules ("daily digest", "weekly analytics", "thumbnail
maintenance") were made here once and now come from each app's own data
migration, which leaves a row made here before alone.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

HOUR = 3600
#: The queue table's queues at the time of this migration: one canary schedule each.
QUEUES = ["pdf-processing", "email-sender", "csv-export", "thumbnails", "maintenance"]

DEFAULTS: list[dict[str, Any]] = [
    {
        "name": "monthly cleanup",
        "description": "Prune old finished jobs, delete expired exports and temporary files.",
        "cron": "0 0 1 * *",
        "job_type": "cleanup",
        "grace_seconds": 24 * HOUR,
    },
    *[
        {
            "name": f"canary {queue}",
            "description": f"Proves the {queue} queue alive.",
            "cron": "* * * * *",
            "job_type": "canary",
            "payload": {"queue": queue, "priority": "high"},
            "grace_seconds": 30,
        }
        for queue in QUEUES
    ],
]


def create_defaults(apps: Any, schema_editor: Any) -> None:
    Schedule = apps.get_model("jobs", "Schedule")
    for row in DEFAULTS:
        Schedule.objects.get_or_create(name=row["name"], defaults=row)


def remove_defaults(apps: Any, schema_editor: Any) -> None:
    Schedule = apps.get_model("jobs", "Schedule")
    Schedule.objects.filter(name__in=[row["name"] for row in DEFAULTS]).delete()


class Migration(migrations.Migration):
    dependencies = [("jobs", "0002_schedules")]

    operations = [migrations.RunPython(create_defaults, remove_defaults)]
