"""The peers' no-op tasks for ``bench/peers.py``: a Celery app and an RQ function, no Django.

Workers import this module by name (``celery -A bench.peer_apps``, RQ by the
function's dotted path), so it holds nothing but the apps and the tasks.
"""

from __future__ import annotations

import os

from celery import Celery  # type: ignore[import-untyped]  # celery ships no type information

CELERY_BROKER_URL = os.environ.get("BENCH_CELERY_URL", "redis://127.0.0.1:6379/12")
CELERY_QUEUE = "bench-celery"

celery_app = Celery("bench_peers", broker=CELERY_BROKER_URL)
celery_app.conf.update(
    task_ignore_result=True,  # no result backend: a no-op has nothing worth keeping
    task_default_queue=CELERY_QUEUE,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


@celery_app.task(name="bench.noop")
def celery_noop() -> None:
    return None


def rq_noop() -> None:
    return None
