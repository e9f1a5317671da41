# The console's search by error text over millions of jobs (issue 18).
#
# A trigram index over every row's error would be written by every status
# change (status is indexed, so no update of a job is HOT). This one holds
# failed jobs only: a row enters it once, when it fails; a retry moves it out.
# The expression is what Django's icontains compares on PostgreSQL
# (UPPER(col::text) LIKE UPPER(%term%)), so `error_message__icontains` with
# `status=failed` uses it as it is. created_at is its first column (btree_gin):
# the search's time bound and the text meet inside the index, so a common
# word ("timed out", in 20,000 failed jobs) reads only the bound's matches
# from the table, not every failed job that has it.
#
# PostgreSQL only (SQLite has no GIN): the model does not declare it, and this
# migration skips other databases. Built CONCURRENTLY, outside a transaction,
# so that writers are not held while it is built on a large table.

from django.db import migrations

INDEX = "job_failed_error_trgm"


def create_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    # Both are trusted extensions (PostgreSQL 13+): the database's owner may create them.
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS btree_gin")
    schema_editor.execute(
        f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX} ON jobs_job "
        "USING gin (created_at, UPPER(error_message) gin_trgm_ops) WHERE status = 'failed'"
    )


def drop_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("jobs", "0016_alert_pager_channel"),
    ]

    operations = [
        migrations.RunPython(create_index, drop_index, elidable=False),
    ]
