# "Run again" (jobs.dispatch.rerun): a new job linked to the finished one it runs again.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('jobs', '0014_job_origin'),
    ]

    operations = [
        migrations.AddField(
            model_name='job',
            name='rerun_of',
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='reruns', to='jobs.job'),
        ),
        migrations.AddIndex(
            model_name='job',
            index=models.Index(condition=models.Q(('rerun_of__isnull', False)), fields=['rerun_of'], name='job_rerun_of'),
        ),
        migrations.AlterField(
            model_name='auditevent',
            name='action',
            field=models.CharField(choices=[('cancel', 'cancel'), ('retry', 'retry'), ('pause', 'pause'), ('resume', 'resume'), ('rerun', 'run again'), ('template-created', 'template created'), ('template-changed', 'template changed'), ('template-deleted', 'template deleted')], max_length=32),
        ),
    ]
