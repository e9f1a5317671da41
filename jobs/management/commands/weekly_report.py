"""``manage.py weekly_report [--dry-run]``: last week's per-queue job table, to Slack or to the terminal."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from jobs.ops.alerts.notifier import WebhookFailed
from jobs.ops.reports import send_weekly_report


class Command(BaseCommand):
    help = "Post last week's job report (jobs, success rate, average duration per queue) to SLACK_WEBHOOK_URL."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="print the message; post nothing")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            report = send_weekly_report(dry_run=options["dry_run"])
        except WebhookFailed as exc:
            raise CommandError(f"Slack did not take the report: {exc}") from exc
        self.stdout.write(report.as_text())
        if not options["dry_run"]:
            self.stdout.write("Posted to Slack.")
