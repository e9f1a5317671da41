"""A plain Dramatiq app (no Django, default middleware) for the throughput baseline."""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

broker = RedisBroker(
    url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"), namespace="bench-plain"
)
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name="bench", max_retries=0)
def noop() -> None:
    return None
