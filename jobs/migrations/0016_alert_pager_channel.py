"""The pager is a channel of its own: its messages are claimed, retried and counted apart from Slack's."""

from __future__ import annotations

from typing import Any

from django.db import migrations, models
from django.db.models import F


def paged_with_slack(apps: Any, schema_editor: Any) -> None:
    # Until now a page went out right after its Slack message: what Slack was sent, the pager was.
    apps.get_model("jobs", "Alert").objects.update(
        page_sent_at=F("fire_sent_at"), page_resolve_sent_at=F("resolve_sent_at")
    )


class Migration(migrations.Migration):
    dependencies = [("jobs", "0015_job_rerun_of")]

    operations = [
        migrations.AddField(model_name="alert", name="page_sent_at", field=models.DateTimeField(blank=True, null=True)),
        migrations.AddField(
            model_name="alert", name="page_resolve_sent_at", field=models.DateTimeField(blank=True, null=True)
        ),
        migrations.AddField(model_name="alert", name="page_failures", field=models.PositiveIntegerField(default=0)),
        migrations.RunPython(paged_with_slack, migrations.RunPython.noop),
    ]
