"""Each scheduler process announces itself in Redis, as workers do: host, pid, last beat.

The alerts run inside the schedulers, so a scheduler that is down has its
own alert (``scheduler_down``, raised by the schedulers still running) and,
for the case where none runs, ``/workers/health`` and ``/metrics`` report
the live ones (``live_schedulers``) for an outside prober (Prometheus, the
load balancer) to alert on. Beats are stamped with Redis's clock
(``broker.clock``), as every reader compares them with it.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import uuid
from typing import Any

import dramatiq
from django.conf import settings

from jobs.core.presence import PresenceEntry, read_entries, said_goodbye, say_goodbye

logger = logging.getLogger(__name__)


def schedulers_key(namespace: str) -> str:
    return f"{namespace}:__schedulers__"


def _broker() -> Any:
    return dramatiq.get_broker()


class SchedulerPresence:
    """A thread that beats every ``SCHEDULER_HEARTBEAT_INTERVAL_S`` until ``stop()`` says goodbye."""

    def __init__(self) -> None:
        self.id = uuid.uuid4().hex
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started_at: float | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._beat_loop, name="scheduler-presence", daemon=True)
        self._thread.start()

    def _beat_loop(self) -> None:
        while True:
            try:
                self.beat()
            except Exception:
                logger.warning("Could not announce this scheduler; trying again", exc_info=True)
            if self._stop.wait(settings.SCHEDULER_HEARTBEAT_INTERVAL_S):
                return

    def beat(self) -> None:
        broker = _broker()
        now = float(broker.clock.now())
        if self._started_at is None:
            self._started_at = now
        entry = {"host": socket.gethostname(), "pid": os.getpid(), "started_at": self._started_at, "heartbeat_at": now}
        broker.client.hset(schedulers_key(broker.namespace), self.id, json.dumps(entry))

    def stop(self, *, goodbye: bool = True) -> None:
        """No more beats; with ``goodbye`` (a clean stop) no alert calls this scheduler down."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if not goodbye:
            return
        try:
            broker = _broker()
            say_goodbye(broker.client, schedulers_key(broker.namespace), self.id, float(broker.clock.now()))
        except Exception:
            logger.warning("Could not record this scheduler's goodbye", exc_info=True)


def scheduler_entries() -> list[dict[str, Any]]:
    """Schedulers that have not said goodbye, newest beat first, each with ``live`` and ``last_beat_s_ago``.

    Live: beat within ``SCHEDULER_ALIVE_HEARTBEAT_S`` (Redis's time). Raises when Redis does not answer.
    """
    broker = _broker()
    key = schedulers_key(broker.namespace)
    now = float(broker.clock.now())
    stopped = said_goodbye(broker.client, key)
    views = [_view(entry, now) for entry in read_entries(broker.client, key) if entry.id not in stopped]
    return sorted(views, key=lambda view: view["last_beat_s_ago"])


def _view(entry: PresenceEntry, now: float) -> dict[str, Any]:
    age = round(entry.age_s(now), 1)
    return {
        "id": entry.id,
        "host": entry.host,
        "pid": entry.pid,
        "last_beat_at": entry.heartbeat_at,
        "last_beat_s_ago": age,
        "live": age <= settings.SCHEDULER_ALIVE_HEARTBEAT_S,
    }


def live_schedulers() -> list[dict[str, Any]]:
    return [entry for entry in scheduler_entries() if entry["live"]]
