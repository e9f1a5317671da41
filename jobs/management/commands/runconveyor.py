"""Run the whole system in the foreground: web server, one worker pool per queue, scheduler.

The processes are supervised by :class:`jobs.ops.supervisor.Supervisor`: a child
that dies is restarted, and Ctrl-C (SIGINT) or SIGTERM stops them all.
"""

from __future__ import annotations

import os
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from jobs.core.queues import all_queues
from jobs.ops.supervisor import ChildSpec, Supervisor, pool_spec, scheduler_spec, web_spec


class Command(BaseCommand):
    help = "Run the web server, every worker pool and the scheduler, and restart any that dies."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--stop-timeout",
            type=float,
            default=60.0,
            help="Seconds to wait for the processes to exit on shutdown before killing them.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        web = web_spec()
        specs: list[ChildSpec] = [web, *(pool_spec(policy) for policy in all_queues()), scheduler_spec()]
        supervisor = Supervisor(specs)
        self._print_summary(specs, supervisor.db_connections())
        supervisor.run_until_signalled(timeout=options["stop_timeout"])

    def _print_summary(self, specs: list[ChildSpec], connections: int) -> None:
        host = os.environ.get("HOST", "127.0.0.1")
        port = os.environ.get("PORT", "8000")
        base = f"http://{'localhost' if host in ('127.0.0.1', '0.0.0.0') else host}:{port}"
        out = self.stdout
        out.write("Conveyor")
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
        line = f"Database connections: at most {connections} of a budget of {budget}"
        if budget and connections > budget:
            out.write(self.style.WARNING(line + " — OVER BUDGET: lower WEB_WORKERS or QUEUE_*_THREADS"))
        else:
            out.write(line)
        out.write("Press Ctrl-C to stop.")
