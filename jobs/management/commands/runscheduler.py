"""``manage.py runscheduler``: recurring jobs (django-apscheduler) and the platform's periodic duties.

Run as many as you like (two machines, a rolling deploy): each fire time
enqueues one job, decided by the database (see ``jobs.ops.scheduling.firing``),
and each alert rule is measured once per window, decided in Redis (see
``jobs.ops.alerts.evaluator``). Each process beats in Redis while it runs
(``jobs.ops.scheduling.presence``) and says goodbye on SIGTERM.
"""

from __future__ import annotations

import logging
import signal
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from jobs.ops.alerts.evaluator import evaluate_alerts_duty
from jobs.ops.reconciler import reconcile_once
from jobs.ops.scheduling.runner import Duty, SchedulerProcess
from jobs.ops.stats import roll_up

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Run the scheduler: the Schedule table's recurring jobs, and the reconciler."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument(
            "--no-default-duties", action="store_true", help="only fire schedules; do not run the reconciler"
        )
        parser.add_argument(
            "--refresh-seconds",
            type=float,
            default=None,
            help="how often the Schedule table is re-read (default: SCHEDULER_REFRESH_S)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        refresh_s = options["refresh_seconds"] or settings.SCHEDULER_REFRESH_S
        duties = []
        if not options["no_default_duties"]:
            duties.append(Duty("reconciler", settings.JOBS_RECONCILE_INTERVAL_S, reconcile_once))
            duties.append(Duty("alerts", settings.ALERTS_EVALUATE_INTERVAL_S, evaluate_alerts_duty))
            duties.append(Duty("job-stats", settings.JOBS_STATS_ROLLUP_INTERVAL_S, roll_up))
        process = SchedulerProcess(refresh_s=refresh_s, duties=duties, max_workers=settings.SCHEDULER_THREADS)
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: process.stop())
        self.stdout.write(
            f"Scheduler running: schedules re-read every {refresh_s}s"
            + ("" if options["no_default_duties"] else f", reconciler every {settings.JOBS_RECONCILE_INTERVAL_S}s")
        )
        self.stdout.flush()
        process.run()
        self.stdout.write("Scheduler stopped")
