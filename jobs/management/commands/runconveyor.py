"""Run this host's part of the system in the foreground: the web server, worker pools, the scheduler.

By default a host runs all three roles, with one worker pool per queue
(``make run``). ``--role`` (repeatable) narrows it to some roles, ``--queues``
to some queues' pools (:mod:`jobs.ops.roles`). The processes are supervised
by :class:`jobs.ops.supervisor.Supervisor`: a child that dies is restarted,
and Ctrl-C (SIGINT) or SIGTERM stops them all.

The release step (``manage.py release``) runs before, once per deploy: this
command does not migrate.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from jobs.core.queues import QueuePolicy, queue_names
from jobs.ops.roles import ALL_ROLES, Role, RoleChoiceError, host_specs, parse_queues, parse_roles
from jobs.ops.supervisor import ChildSpec, Supervisor


class Command(BaseCommand):
    help = "Run this host's roles (web server, worker pools, scheduler) and restart any process that dies."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--role",
            action="append",
            metavar="ROLE",
            help=f"Run this role: {', '.join(ALL_ROLES)}. Repeatable (or comma-separated); default: all three.",
        )
        parser.add_argument(
            "--queues",
            metavar="QUEUE[,QUEUE...]",
            help=f"The workers role runs pools for these queues only (of {', '.join(queue_names())}); "
            "default: every queue.",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Print the processes and database connections this host would have, and start nothing.",
        )
        parser.add_argument(
            "--stop-timeout",
            type=float,
            default=60.0,
            help="Seconds to wait for the processes to exit on shutdown before killing them.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            roles = parse_roles(options["role"])
            queues = parse_queues(options["queues"])
        except RoleChoiceError as exc:
            raise CommandError(str(exc)) from exc
        if options["queues"] is not None and Role.WORKERS not in roles:
            # Almost certainly a mistake in a host's command line: say so rather than ignore it.
            raise CommandError("--queues chooses worker pools: it needs the workers role (--role workers)")
        specs = host_specs(roles, queues)
        supervisor = Supervisor(specs)
        self._print_summary(roles, queues, specs, supervisor.db_connections(), dry_run=options["dry_run"])
        if options["dry_run"]:
            return
        supervisor.run_until_signalled(timeout=options["stop_timeout"])

    def _print_summary(
        self,
        roles: Sequence[Role],
        queues: Sequence[QueuePolicy],
        specs: list[ChildSpec],
        connections: int,
        *,
        dry_run: bool,
    ) -> None:
        out = self.stdout
        described = [f"workers ({', '.join(q.name for q in queues)})" if r is Role.WORKERS else r for r in roles]
        out.write("Conveyor: " + ", ".join(described))
        if Role.WEB in roles:
            host = os.environ.get("HOST", "127.0.0.1")
            port = os.environ.get("PORT", "8000")
            # A comparison that prints localhost for a wildcard address, not a bind.
            base = f"http://{'localhost' if host in ('127.0.0.1', '0.0.0.0') else host}:{port}"  # noqa: S104
            out.write(f"  web        {base}/")
            out.write(f"  admin      {base}/admin/")
            out.write(f"  API docs   {base}/api/docs/")
            out.write(f"  health     {base}/workers/health")
        out.write("Processes")
        for spec in specs:
            detail = " ".join(spec.argv[1:])
            nice = f" (nice {spec.nice})" if spec.nice else ""
            out.write(f"  {spec.name:<24} {spec.db_connections:>3} db conn{nice}  {detail}")
        budget = int(getattr(settings, "DB_CONNECTION_BUDGET", 0))
        line = f"Database connections: this host at most {connections} of a budget of {budget}"
        if budget and connections > budget:
            out.write(self.style.WARNING(line + " — OVER BUDGET: lower WEB_WORKERS or QUEUE_*_THREADS"))
        else:
            out.write(line)
        out.write(
            "  DB_CONNECTION_BUDGET is for all hosts together: the sum of this figure over every host must stay"
            " within it, and the budget within PostgreSQL's max_connections."
        )
        if not dry_run:
            out.write("Press Ctrl-C to stop.")
