"""Paused queues: they keep their jobs and run none until resumed.

The set of paused queue names lives in Redis under the broker's namespace, so
every worker on every machine sees the same answer. A consumer asks
``consumer_should_wait`` before it hands out or fetches messages; the answer is
cached for ``PAUSE_CACHE_S`` per process so that asking costs nothing per
message (a pause takes effect within that long, plus one running job's time).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import dramatiq

from jobs.core.queues import get_queue

#: How long a worker process trusts its copy of the paused set.
PAUSE_CACHE_S = 1.0
#: How long an idle consumer of a paused queue waits before asking again.
PAUSED_POLL_S = 0.5

_cache: dict[str, tuple[float, frozenset[str]]] = {}
_cache_lock = threading.Lock()


def paused_key(namespace: str) -> str:
    return f"{namespace}:__paused__"


def _broker() -> Any:
    return dramatiq.get_broker()


def pause_queue(name: str) -> None:
    """Stop every worker from starting jobs of this queue (raises ``UnknownQueue``)."""
    get_queue(name)
    broker = _broker()
    broker.client.sadd(paused_key(broker.namespace), name)


def resume_queue(name: str) -> None:
    """Let workers run this queue's jobs again (raises ``UnknownQueue``)."""
    get_queue(name)
    broker = _broker()
    broker.client.srem(paused_key(broker.namespace), name)


def paused_queues() -> set[str]:
    """The names of the paused queues, read from Redis now."""
    broker = _broker()
    return {_text(name) for name in broker.client.smembers(paused_key(broker.namespace))}


def consumer_should_wait(broker: Any, queue_name: str) -> bool:
    """True when ``queue_name``'s consumer must hand out nothing now (cached per process).

    Only the queue itself pauses: its delay queue keeps moving due messages
    into it, where they wait with the others.
    """
    now = time.monotonic()
    with _cache_lock:
        expires_at, names = _cache.get(broker.namespace, (0.0, frozenset()))
    if now >= expires_at:
        names = frozenset(_text(name) for name in broker.client.smembers(paused_key(broker.namespace)))
        with _cache_lock:
            _cache[broker.namespace] = (now + PAUSE_CACHE_S, names)
    return queue_name in names


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
