"""``manage.py release``: the step a deploy runs once, before any host starts its roles.

It runs ``migrate``, ``collectstatic`` and ``ensure_admin``, in that order,
under the database's release lock (:mod:`jobs.ops.release`): when two hosts
run it at once, the second waits for the first, then finds nothing left to
migrate and the staff account already there. Every part is idempotent, so
running it on every host, or again after a failed deploy, is safe.

Why a command rather than the web role doing it at start: a schema change
belongs to the deploy, not to whichever web process the supervisor or the
orchestrator happens to restart; a failing migration then fails the deploy
step, where the operator looks, instead of putting the web hosts in a
restart loop; and worker hosts, which need the new schema as much as the
web hosts, do not depend on a web host having started first.

``collectstatic`` fills this host's ``STATIC_ROOT``, which only web hosts
serve from: the Docker image already ran it at build time, and worker hosts
do not need it (``--skip-collectstatic``).
"""

from __future__ import annotations

import sys
from typing import Any

from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from jobs.ops.release import release_lock


class Command(BaseCommand):
    help = "Run migrate, collectstatic and ensure_admin under a lock: safe when several hosts start at once."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--skip-collectstatic",
            action="store_true",
            help="Only the database steps (the image already holds its static files; worker hosts serve none).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        verbosity = options["verbosity"]
        # The streams themselves, not our wrappers: a second wrapper would end
        # migrate's "Applying ..." before its " OK".
        streams = {"stdout": options.get("stdout") or sys.stdout, "stderr": options.get("stderr") or sys.stderr}
        with release_lock(say=self._say):
            call_command("migrate", interactive=False, verbosity=verbosity, **streams)
            if not options["skip_collectstatic"]:
                call_command("collectstatic", interactive=False, verbosity=verbosity, **streams)
            # Last, so that a generated password is the last thing printed before the roles start.
            call_command("ensure_admin", verbosity=verbosity, **streams)
        self.stdout.write("Release step done.")

    def _say(self, message: str) -> None:
        self.stdout.write(message)
        self.stdout.flush()
