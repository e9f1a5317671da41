"""Paused queues: they keep their jobs and run none until resumed.

The set of paused queue names lives in Redis under the broker's namespace, so
every worker on every machine sees the same answer. A consumer asks
``consumer_should_wait`` before it hands out or fetches messages; the answer is
cached for ``PAUSE_CACHE_S`` per process so that asking costs nothing per
message (a pause takes effect within that long, plus one running job's time).

The database records each pause and resume too (``jobs.models.QueuePause``):
Redis restarted without its data forgets the set, and the reconciler's next
pass puts it back (``restore_paused_queues``). Each writer holds the queue's
row lock while it writes the set, so a restore never undoes a resume that
raced it, nor the other way round.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import dramatiq
from django.db import transaction
from django.utils import timezone

from jobs.core.queues import get_queue

logger = logging.getLogger(__name__)

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
    _record(name, paused=True)


def resume_queue(name: str) -> None:
    """Let workers run this queue's jobs again (raises ``UnknownQueue``)."""
    get_queue(name)
    _record(name, paused=False)


def _record(name: str, *, paused: bool) -> None:
    """Write the queue's row and the Redis set under the row's lock; a Redis error undoes the row."""
    # Imported here: the broker imports this module before Django can import models.
    from jobs.models import QueuePause

    broker = _broker()
    with transaction.atomic():
        QueuePause.objects.update_or_create(queue=name, defaults={"paused": paused, "changed_at": timezone.now()})
        if paused:
            broker.client.sadd(paused_key(broker.namespace), name)
        else:
            broker.client.srem(paused_key(broker.namespace), name)


def restore_paused_queues() -> set[str]:
    """Make Redis's paused set say what the database records; the names put back (the reconciler calls it).

    A queue Redis has paused with no row yet (paused before the rows
    existed) is recorded as paused, not resumed.
    """
    from jobs.models import QueuePause

    broker = _broker()
    key = paused_key(broker.namespace)
    with transaction.atomic():
        rows = {row.queue: row.paused for row in QueuePause.objects.select_for_update().order_by("queue")}
        in_redis = {_text(name) for name in broker.client.smembers(key)}
        unrecorded = in_redis - rows.keys()
        if unrecorded:
            QueuePause.objects.bulk_create(
                [QueuePause(queue=name, paused=True) for name in sorted(unrecorded)], ignore_conflicts=True
            )
        missing = {name for name, paused in rows.items() if paused} - in_redis
        extra = {name for name, paused in rows.items() if not paused} & in_redis
        if missing:
            broker.client.sadd(key, *sorted(missing))
        if extra:
            broker.client.srem(key, *sorted(extra))
    if missing:
        logger.warning("Paused queues missing from Redis, paused again: %s", ", ".join(sorted(missing)))
    return missing


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
