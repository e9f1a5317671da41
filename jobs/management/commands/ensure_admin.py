"""Make sure a staff superuser exists, so a fresh `make run` can log in to the admin.

With ``ADMIN_USERNAME`` and ``ADMIN_PASSWORD`` set, that account is created
or updated (password, staff and superuser flags). With only
``ADMIN_USERNAME`` set, the account is created with a generated password if
it does not exist. With neither, and no superuser in the database, ``admin``
is created with a generated password. A generated password is printed once;
an existing account's password is never printed nor changed. ``ADMIN_PASSWORD`` must pass
``AUTH_PASSWORD_VALIDATORS``: a weak one stops the command with the validators' reasons.
"""

from __future__ import annotations

import logging
import os
import secrets
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

logger = logging.getLogger(__name__)

DEFAULT_USERNAME = "admin"


class Command(BaseCommand):
    help = "Create or update the staff superuser named by ADMIN_USERNAME / ADMIN_PASSWORD."

    def handle(self, *args: Any, **options: Any) -> None:
        username = os.environ.get("ADMIN_USERNAME", "").strip()
        password = os.environ.get("ADMIN_PASSWORD", "")
        user_model = get_user_model()

        if not username and user_model.objects.filter(is_superuser=True).exists():
            return
        username = username or DEFAULT_USERNAME

        with transaction.atomic():
            user = user_model.objects.filter(**{user_model.USERNAME_FIELD: username}).first()
            generated = ""
            if user is None:
                generated = "" if password else secrets.token_urlsafe(12)
                user = user_model(**{user_model.USERNAME_FIELD: username})
                user.set_password(password or generated)
                created = True
            else:
                if password:
                    user.set_password(password)
                created = False
            if password:
                try:
                    validate_password(password, user)
                except ValidationError as exc:
                    raise CommandError(f"ADMIN_PASSWORD is too weak: {' '.join(exc.messages)}") from None
            user.is_staff = True
            user.is_superuser = True
            user.is_active = True
            user.save()

        if generated:
            self.stdout.write(f"Created staff account {username} / {generated} — shown once")
        elif created:
            self.stdout.write(f"Created staff account {username} (password from ADMIN_PASSWORD)")
        elif password:
            self.stdout.write(f"Updated staff account {username} (password from ADMIN_PASSWORD)")
        logger.debug("staff account %s ensured", username)
