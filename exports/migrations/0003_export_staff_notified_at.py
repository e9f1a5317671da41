from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("exports", "0002_weekly_analytics_schedule")]

    operations = [
        migrations.AddField(
            model_name="export",
            name="staff_notified_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
