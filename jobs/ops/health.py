"""What ``/workers/health`` reports: per queue, is someone consuming it, and how far behind is it.

A worker process is *alive* only when both hold:

* it heartbeated within ``WORKER_ALIVE_HEARTBEAT_S`` (its presence entry, see
  ``jobs.worker.middleware.presence``, is written by a thread of its own), and
* it is still consuming: a canary of one of its queues was picked up within
  ``WORKER_CONSUMING_WITHIN_S`` (the scheduler sends one per queue every
  minute and every pool sends one when it starts), or every one of its slots
  runs a job that reported progress within that time (a worker busy with long
  exports cannot pick up a canary, and is alive all the same), or every one
  of its queues is paused (it does not consume on purpose, see ``jobs.worker.pausing``).

A process whose presence thread still runs but whose consumer is stuck fails
the second test. The canary test is per queue: any worker's pickup proves
the queue's consumers.

The report also lists the scheduler processes (``schedulers``: each one's
host, pid, last beat, live or not; see ``jobs.ops.scheduling.presence``)
and is not ok when none is live: the alerts run inside the schedulers, so
with none running only an outside prober polling this endpoint can tell.

Neither test reads this host's clock: heartbeats are compared in Redis's time
(``broker.clock``, which stamps them), job timestamps in the database's
(``database_now``), so a web host whose clock is off judges like any other.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any

import dramatiq
from django.conf import settings
from django.db import connection
from django.db.models import F, Max, Min
from django.utils import timezone

from jobs.core.clock import database_now
from jobs.core.queues import queue_names
from jobs.core.ttl_cache import TtlCache
from jobs.models import Job, JobStatus
from jobs.ops.scheduling.presence import scheduler_entries
from jobs.worker.middleware.presence import workers_key
from jobs.worker.pausing import paused_queues

logger = logging.getLogger(__name__)

CANARY_TYPE = "canary"


def _presence_entries() -> list[dict[str, Any]]:
    """Worker processes whose presence entry is fresher than the heartbeat limit (N)."""
    broker: Any = dramatiq.get_broker()
    cutoff = broker.clock.now() - settings.WORKER_ALIVE_HEARTBEAT_S
    entries = broker.client.hgetall(workers_key(broker.namespace))
    workers = []
    for worker_id, raw in entries.items():
        entry = json.loads(raw)
        if entry.get("heartbeat_at", 0) >= cutoff:
            entry["id"] = worker_id.decode() if isinstance(worker_id, bytes) else str(worker_id)
            workers.append(entry)
    return workers


def queues_with_recent_canary(since: datetime) -> set[str]:
    """Queues whose canary a worker picked up at or after ``since`` (indexed: type, status, finished_at)."""
    rows = (
        Job.objects.filter(type=CANARY_TYPE, started_at__gte=since, created_at__gte=since - timedelta(hours=1))
        .values_list("queue", flat=True)
        .distinct()
    )
    return set(rows)


def _slots_all_progressing(entry: dict[str, Any], since: datetime) -> bool:
    running = [job_id for job_id in entry.get("running", []) if job_id]
    slots = int(entry.get("threads") or 0)
    if slots <= 0 or len(running) < slots:
        return False
    fresh = Job.objects.filter(id__in=running, status=JobStatus.ACTIVE, updated_at__gte=since).count()
    return fresh >= len(running)


def live_workers() -> list[dict[str, Any]]:
    """Worker processes that heartbeat *and* still consume (see the module docstring).

    Each entry gets ``consuming``: ``"canary"``, ``"busy"`` or ``"paused"``.
    """
    entries = _presence_entries()
    if not entries:
        return []
    since = database_now() - timedelta(seconds=settings.WORKER_CONSUMING_WITHIN_S)
    proven = queues_with_recent_canary(since)
    paused = paused_queues()
    alive = []
    for entry in entries:
        queues = set(entry.get("queues", []))
        if proven & queues:
            entry["consuming"] = "canary"
        elif _slots_all_progressing(entry, since):
            entry["consuming"] = "busy"
        elif queues and queues <= paused:
            entry["consuming"] = "paused"
        else:
            continue
        alive.append(entry)
    return alive


def queue_depths() -> dict[str, int]:
    broker = dramatiq.get_broker()
    return {queue: broker.queue_depth(queue) for queue in queue_names()}  # type: ignore[attr-defined]


def last_canary_latency_ms() -> dict[str, float]:
    """Per queue, send-to-pickup time of the latest canary picked up in the last hour."""
    recent = timezone.now() - timedelta(hours=1)
    latest = (
        Job.objects.filter(type=CANARY_TYPE, started_at__isnull=False, created_at__gte=recent)
        .values("queue")
        .annotate(last=Max("created_at"))
        .order_by()
    )
    latencies: dict[str, float] = {}
    for row in latest:
        canary = (
            Job.objects.filter(type=CANARY_TYPE, queue=row["queue"], created_at=row["last"], started_at__isnull=False)
            .values(latency=F("started_at") - F("created_at"))
            .first()
        )
        if canary is not None:
            latencies[row["queue"]] = round(canary["latency"].total_seconds() * 1000, 1)
    return latencies


def oldest_waiting_s() -> dict[str, float]:
    now = timezone.now()
    rows = Job.objects.filter(status=JobStatus.QUEUED).values("queue").annotate(oldest=Min("created_at")).order_by()
    return {row["queue"]: round((now - row["oldest"]).total_seconds(), 1) for row in rows}


def _database_reachable() -> bool:
    try:
        connection.ensure_connection()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception as exc:
        logger.warning("Health: database unreachable: %s", exc)
        return False


def health_report() -> tuple[bool, dict[str, Any]]:
    """(ok, report). Not ok when Redis or the database is unreachable, a queue has no live worker or no
    scheduler is live (``schedulers.ok`` false)."""
    report: dict[str, Any] = {"redis": "ok", "database": "ok", "queues": {}}
    database_ok = _database_reachable()
    if not database_ok:
        report["database"] = "unreachable"
    workers: list[dict[str, Any]] = []
    depths: dict[str, int] = {}
    schedulers: list[dict[str, Any]] = []
    try:
        depths = queue_depths()
        schedulers = scheduler_entries()
        if database_ok:
            workers = live_workers()
    except Exception as exc:
        logger.warning("Health: Redis unreachable: %s", exc)
        report["redis"] = "unreachable"
    oldest: dict[str, float] = {}
    latency: dict[str, float] = {}
    if database_ok:
        oldest = oldest_waiting_s()
        latency = last_canary_latency_ms()
    live_schedulers = sum(1 for scheduler in schedulers if scheduler["live"])
    report["schedulers"] = {"ok": live_schedulers > 0, "live": live_schedulers, "processes": schedulers}
    ok = database_ok and report["redis"] == "ok" and live_schedulers > 0
    for queue in queue_names():
        live = [worker for worker in workers if queue in worker.get("queues", [])]
        ok = ok and bool(live)
        report["queues"][queue] = {
            "ok": bool(live),
            "live_workers": len(live),
            "backlog": depths.get(queue),
            "oldest_waiting_s": oldest.get(queue, 0.0),
            "last_canary_latency_ms": latency.get(queue),
        }
    report["ok"] = ok
    return ok, report


#: The whole report, whatever it comes to hold, kept at most HEALTH_CACHE_S (<= 1 s) per process.
_report_cache: TtlCache[tuple[bool, dict[str, Any]]] = TtlCache(health_report, lambda: settings.HEALTH_CACHE_S)


def cached_health_report() -> tuple[bool, dict[str, Any]]:
    """``health_report()``, computed at most once per ``HEALTH_CACHE_S`` in this process."""
    return _report_cache.get()


def forget_cached_health_report() -> None:
    """Drop the kept report (tests that change what it reports)."""
    _report_cache.clear()
