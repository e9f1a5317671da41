"""Thumbnail presence in the database: ``Document.thumbnails`` maps each size to its storage name.

Thumbnails made before this migration sit under ``MEDIA_ROOT/thumbnails/<id>/<size>.<ext>``;
they are recorded here from the local disk (no storage request). Files that are
moved to object storage later keep these names (``manage.py move_files_to_storage``).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import migrations, models


def record_local_thumbnails(apps: Any, schema_editor: Any) -> None:
    Document = apps.get_model("documents", "Document")
    root = Path(settings.MEDIA_ROOT) / "thumbnails"
    if not root.is_dir():
        return
    for directory in root.iterdir():
        try:
            document_id = uuid.UUID(directory.name)
        except ValueError:
            continue
        if not directory.is_dir():
            continue
        stored = {
            path.stem: f"thumbnails/{directory.name}/{path.name}"
            for path in sorted(directory.iterdir())
            if path.stem.isdigit() and path.suffix in (".png", ".webp")
        }
        if stored:
            Document.objects.filter(id=document_id).update(thumbnails=stored)


class Migration(migrations.Migration):
    dependencies = [
        ("documents", "0002_thumbnail_maintenance_schedule"),
    ]

    operations = [
        migrations.AddField(
            model_name="document",
            name="thumbnails",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.RunPython(record_local_thumbnails, migrations.RunPython.noop),
    ]
