"""Deliveries are updated in place: no index on a column that sending changes, and room on each page.

Each message rewrote its row twice, and each rewrite added an entry to every
index of the table (``status`` was indexed, so no update could be HOT). The
(campaign, status) index goes, as does the plain campaign index that the
unique (campaign, user) one already covers; and on PostgreSQL each page keeps
30 % free so the new version of a row fits next to the old one.
"""

import django.db.models.deletion
from django.db import migrations, models


def _set_fillfactor(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE campaigns_delivery SET (fillfactor = 70)")


def _reset_fillfactor(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE campaigns_delivery RESET (fillfactor)")


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0001_initial"),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name="delivery",
            name="delivery_campaign_status",
        ),
        migrations.AlterField(
            model_name="delivery",
            name="campaign",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.CASCADE,
                related_name="deliveries",
                to="campaigns.campaign",
            ),
        ),
        migrations.RunPython(_set_fillfactor, _reset_fillfactor),
    ]
