"""Settings for ``bench/fairness.py``'s FIFO rounds: the real settings, every job in one owner bucket.

A job's bucket is decided where its message is built (``jobs.dispatch.services.message_for``),
in whichever process enqueues it: the bench for the customers' requests, the worker pools
for the children those requests fan out. The app below makes that decision "sys" for
every job in each process started with these settings, so the fair queue holds one owner
and serves it in arrival order (per priority), as Dramatiq's plain list would.
Benchmarks only: nothing in the product reads this module.
"""

from __future__ import annotations

from typing import Any

from django.apps import AppConfig

from config.settings import *  # noqa: F403
from config.settings import INSTALLED_APPS as _INSTALLED_APPS


def one_bucket(job: Any) -> str:
    """Every job's bucket: the shared system one."""
    from jobs.dispatch.fairness import SYSTEM_BUCKET

    return SYSTEM_BUCKET


class FifoDispatch(AppConfig):
    name = "bench"
    label = "bench_fifo"
    verbose_name = "FIFO dispatch (benchmarks)"

    def ready(self) -> None:
        from jobs.dispatch import services

        services.owner_bucket = one_bucket  # type: ignore[assignment]


INSTALLED_APPS = [*_INSTALLED_APPS, "bench.fifo_settings.FifoDispatch"]
