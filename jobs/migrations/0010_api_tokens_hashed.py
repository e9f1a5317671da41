"""API tokens move to django-rest-knox: each DRF token becomes a knox row holding only its digest.

Clients keep their token until it expires (API_TOKEN_TTL_HOURS from this migration);
the plaintext keys are then deleted from DRF's table, which stays (empty) if it exists.
"""

from __future__ import annotations

from django.conf import settings
from django.db import migrations
from django.utils import timezone

DRF_TABLE = "authtoken_token"


def hash_drf_tokens(apps, schema_editor):
    from knox.crypto import hash_token
    from knox.settings import CONSTANTS

    connection = schema_editor.connection
    if DRF_TABLE not in connection.introspection.table_names():
        return
    auth_token = apps.get_model("knox", "AuthToken")
    with connection.cursor() as cursor:
        # DRF_TABLE is a constant of this module.
        cursor.execute(f"SELECT key, user_id FROM {DRF_TABLE}")  # noqa: S608
        rows = cursor.fetchall()
    expiry = timezone.now() + settings.REST_KNOX["TOKEN_TTL"]
    auth_token.objects.bulk_create(
        [
            auth_token(
                digest=hash_token(key), token_key=key[: CONSTANTS.TOKEN_KEY_LENGTH], user_id=user_id, expiry=expiry
            )
            for key, user_id in rows
        ],
        ignore_conflicts=True,
    )
    with connection.cursor() as cursor:
        # DRF_TABLE is a constant of this module.
        cursor.execute(f"DELETE FROM {DRF_TABLE}")  # noqa: S608


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0009_audit_trail"),
        ("knox", "0009_extend_authtoken_field"),
    ]

    operations = [migrations.RunPython(hash_drf_tokens, migrations.RunPython.noop)]
