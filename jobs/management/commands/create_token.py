"""``manage.py create_token <username>``: print a new API token for a user."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from jobs.web.credentials import issue_token


class Command(BaseCommand):
    help = (
        "Print a new API token for a user (valid API_TOKEN_TTL_HOURS; send it as 'Authorization: Token <token>'). "
        "Only its digest is stored: it cannot be shown again."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("username")

    def handle(self, *args: Any, **options: Any) -> None:
        user_model = get_user_model()
        try:
            user = user_model.objects.get(username=options["username"])
        except user_model.DoesNotExist:
            raise CommandError(f"no user named {options['username']!r}") from None
        instance, token = issue_token(user)
        self.stdout.write(token)
        if instance.expiry is not None:
            self.stderr.write(f"valid until {instance.expiry.isoformat(timespec='seconds')}")
