"""Drop the jobs that django-apscheduler stored: they name the scheduler's function by its old path.

Each stored job pickles the path of its function, and that was
``jobs.scheduling.runner:fire_scheduled`` before the platform was arranged
by role (now ``jobs.ops.scheduling.runner:fire_scheduled``). The Schedule
table stays the source of truth: at its next sync the scheduler adds one job
per unpaused schedule again, with the new path. A fire time that falls while
no scheduler runs across this upgrade is not made up for: the re-added job
counts from the moment it is added. Executions go with their job (cascade).
"""

from __future__ import annotations

from typing import Any

from django.db import migrations


def drop_stored_jobs(apps: Any, schema_editor: Any) -> None:
    apps.get_model("django_apscheduler", "DjangoJob").objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0007_fewer_job_indexes"),
        ("django_apscheduler", "0009_djangojobexecution_unique_job_executions"),
    ]

    # Going back needs nothing either: the old tree's scheduler re-adds its jobs the same way.
    operations = [migrations.RunPython(drop_stored_jobs, migrations.RunPython.noop)]
