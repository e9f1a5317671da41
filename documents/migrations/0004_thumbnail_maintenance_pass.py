"""Thumbnail maintenance keeps its place: a pass walks the documents by id and resumes at its cursor."""

from django.db import migrations, models
from django.utils import timezone


class Migration(migrations.Migration):
    dependencies = [("documents", "0003_document_thumbnails")]

    operations = [
        migrations.CreateModel(
            name="ThumbnailMaintenancePass",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("started_at", models.DateTimeField(default=timezone.now)),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
                ("is_open", models.BooleanField(default=True, null=True, unique=True)),
                ("cursor", models.UUIDField(blank=True, null=True)),
                ("checked", models.PositiveBigIntegerField(default=0)),
                ("repaired", models.PositiveBigIntegerField(default=0)),
                ("batches", models.PositiveIntegerField(default=0)),
                ("runs", models.PositiveIntegerField(default=0)),
                ("longest_batch_s", models.FloatField(default=0.0)),
            ],
            options={"ordering": ["-started_at"]},
        ),
    ]
