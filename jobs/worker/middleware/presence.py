"""Each worker process announces itself in Redis: what it consumes and what it runs.

The health endpoint and the console read these entries; an entry older than
the heartbeat timeout belongs to a worker that is gone. Entries are stamped
with Redis's clock (``broker.clock``), as readers compare them, so a host
whose clock is off is neither reported gone nor kept alive. A worker stopping
cleanly (SIGTERM) says goodbye (``jobs.core.presence``): the worker-offline
alert pages for a worker gone without one. Once booted, each
worker process also sends a canary to its queues: its pickup is what proves
a new pool consuming (see ``jobs.ops.health``) without waiting for the
scheduler's next one.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from typing import Any

import dramatiq
from django.conf import settings
from django.db import connection
from dramatiq.broker import MessageProxy
from dramatiq.common import q_name
from dramatiq.middleware import Middleware

from jobs.core.presence import say_goodbye
from jobs.core.queues import queue_names
from jobs.dispatch.canaries import WORKER_START_KEY_PREFIX, send_canaries

logger = logging.getLogger(__name__)


def workers_key(namespace: str) -> str:
    return f"{namespace}:__workers__"


def _redis_now(broker: dramatiq.Broker) -> float:
    clock: Any = getattr(broker, "clock", None)
    return time.time() if clock is None else float(clock.now())


class WorkerPresence(Middleware):
    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._queues: list[str] = []
        self._threads = 0
        self._running: dict[str, str] = {}
        self._processed = 0
        self._failed = 0
        self._started = time.time()

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        whitelist = getattr(worker, "consumer_whitelist", None) or broker.get_declared_queues()
        self._queues = sorted(q_name(name) for name in whitelist)
        self._threads = getattr(worker, "worker_threads", 0)
        try:
            self._started = _redis_now(broker)
        except Exception:
            logger.warning("Could not read Redis's clock for this worker's start time", exc_info=True)
        self._thread = threading.Thread(
            target=self._announce_loop, args=(broker,), name="conveyor-presence", daemon=True
        )
        self._thread.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stop.set()
        if self._thread is not None:
            # An announce under way would write the entry back after the goodbye removed it.
            self._thread.join(timeout=5)
        redis_broker: Any = broker
        try:
            say_goodbye(
                redis_broker.client, workers_key(redis_broker.namespace), redis_broker.broker_id, _redis_now(broker)
            )
        except Exception:
            logger.warning("Could not record this worker's goodbye", exc_info=True)

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self._running[message.message_id] = q_name(message.queue_name)

    def after_process_message(
        self, broker: dramatiq.Broker, message: MessageProxy, *, result: Any = None, exception: Any = None
    ) -> None:
        self._running.pop(message.message_id, None)
        self._processed += 1
        if exception is not None:
            self._failed += 1

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self._running.pop(message.message_id, None)

    def _send_boot_canaries(self, broker: dramatiq.Broker) -> None:

        queues = [queue for queue in self._queues if queue in queue_names()]
        if not queues:
            return
        try:
            prefix = f"{WORKER_START_KEY_PREFIX}{getattr(broker, 'broker_id', os.getpid())}:"
            send_canaries(queues, key_prefix=prefix)
        except Exception:
            logger.warning("Could not send this worker's start-up canaries", exc_info=True)
        finally:
            connection.close()  # this thread's own connection; it is not used again

    def _announce_loop(self, broker: dramatiq.Broker) -> None:
        interval = settings.DRAMATIQ_HEARTBEAT_INTERVAL_MS / 1000
        try:
            self._announce(broker)
        except Exception:
            logger.warning("Could not announce this worker; trying again", exc_info=True)
        self._send_boot_canaries(broker)
        while True:
            try:
                self._announce(broker)
            except Exception:
                logger.warning("Could not announce this worker; trying again", exc_info=True)
            if self._stop.wait(interval):
                return

    def _announce(self, broker: dramatiq.Broker) -> None:
        entry = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "queues": self._queues,
            "threads": self._threads,
            "running": list(self._running),
            "processed": self._processed,
            "failed": self._failed,
            "started_at": self._started,
            "heartbeat_at": _redis_now(broker),
        }
        redis_broker: Any = broker
        redis_broker.client.hset(workers_key(redis_broker.namespace), redis_broker.broker_id, json.dumps(entry))
