"""The default schedules, all in UTC; staff edit, pause and run them from the admin."""

from __future__ import annotations

from typing import Any

from django.db import migrations

HOUR = 3600
#: The queue table's queues at the time of this migration: one canary schedule each.
QUEUES = ["pdf-processing", "email-sender", "csv-export", "thumbnails", "maintenance"]

DEFAULTS: list[dict[str, Any]] = [
    {
        "name": "daily digest",
        "description": "Email batch to active users.",
        "cron": "0 8 * * *",
        "job_type": "email-digest",
        "grace_seconds": HOUR,
    },
    {
        "name": "weekly analytics",
        "description": "CSV export of last week's job metrics.",
        "cron": "0 6 * * 1",
        "job_type": "weekly-job-metrics",
        "grace_seconds": 6 * HOUR,
    },
    {
        "name": "monthly cleanup",
        "description": "Prune old finished jobs, delete expired exports and temporary files.",
        "cron": "0 0 1 * *",
        "job_type": "cleanup",
        "grace_seconds": 24 * HOUR,
    },
    {
        "name": "thumbnail maintenance",
        "description": "Regenerate missing thumbnails.",
        "cron": "0 2 * * *",
        "job_type": "thumbnail-maintenance",
        "grace_seconds": 6 * HOUR,
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
