"""A plain Dramatiq app (no Django, default middleware) for the throughput baseline."""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

broker = RedisBroker(url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"), namespace="bench-plain")
dramatiq.set_broker(broker)


@dramatiq.actor(queue_name="bench", max_retries=0)
def noop() -> None:
    return None


@dramatiq.actor(queue_name="bench-latency", max_retries=0)
def record_pickup(sent_at: float) -> None:
    """Records how long the message waited before a worker picked it up."""
    import time

    broker.client.rpush("bench-plain:pickup", time.time() - sent_at)
