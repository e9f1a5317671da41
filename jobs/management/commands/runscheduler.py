"""``manage.py runscheduler``: the platform's periodic duties (reconciler, canaries)."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import close_old_connections

from jobs.canaries import send_canaries
from jobs.reconciler import reconcile_once

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Run the scheduler: the reconciler and the per-minute canaries."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--no-canaries", action="store_true", help="do not send canaries")
        parser.add_argument("--canary-interval", type=float, default=60.0)

    def handle(self, *args: Any, **options: Any) -> None:
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        duties: list[tuple[float, Callable[[], object]]] = [(settings.JOBS_RECONCILE_INTERVAL_S, reconcile_once)]
        if not options["no_canaries"]:
            duties.append((options["canary_interval"], send_canaries))
        next_run = [0.0 for _ in duties]
        self.stdout.write(f"Scheduler running: reconciler every {settings.JOBS_RECONCILE_INTERVAL_S}s")
        clock = 0.0
        tick = 0.5
        while not stop.wait(tick):
            clock += tick
            for index, (interval, duty) in enumerate(duties):
                if clock < next_run[index]:
                    continue
                next_run[index] = clock + interval
                try:
                    close_old_connections()
                    duty()
                except Exception:
                    logger.exception("Scheduled duty %s failed; next try in %ss", duty.__name__, interval)
        self.stdout.write("Scheduler stopped")
