"""The weekly report's default schedule: Mondays at 07:00 UTC (staff edit or pause it in the admin)."""

from __future__ import annotations

from typing import Any

from django.db import migrations

WEEKLY_REPORT = {
    "name": "weekly report",
    "description": "Slack table per queue of last week's jobs: count, success rate, average duration.",
    # A day name: APScheduler numbers weekdays from 0 = Monday, unlike crontab (1 = Monday).
    "cron": "0 7 * * mon",
    "job_type": "weekly-report",
    "grace_seconds": 6 * 3600,
}


def create_schedule(apps: Any, schema_editor: Any) -> None:
    Schedule = apps.get_model("jobs", "Schedule")
    Schedule.objects.get_or_create(name=WEEKLY_REPORT["name"], defaults=WEEKLY_REPORT)


def remove_schedule(apps: Any, schema_editor: Any) -> None:
    Schedule = apps.get_model("jobs", "Schedule")
    Schedule.objects.filter(name=WEEKLY_REPORT["name"]).delete()


class Migration(migrations.Migration):
    dependencies = [("jobs", "0005_alerts")]

    operations = [migrations.RunPython(create_schedule, remove_schedule)]
