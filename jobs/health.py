"""What ``/workers/health`` reports: per queue, is someone consuming it, and how far behind is it."""

from __future__ import annotations

import json
import logging
import time
from datetime import timedelta
from typing import Any

import dramatiq
from django.conf import settings
from django.db import connection
from django.db.models import F, Min
from django.utils import timezone

from jobs.middleware.presence import workers_key
from jobs.models import Job, JobStatus
from jobs.queues import queue_names

logger = logging.getLogger(__name__)


def live_workers() -> list[dict[str, Any]]:
    """Worker processes whose presence entry is fresher than the heartbeat timeout."""
    broker = dramatiq.get_broker()
    cutoff = time.time() - settings.DRAMATIQ_HEARTBEAT_TIMEOUT_MS / 1000
    entries = broker.client.hgetall(workers_key(broker.namespace))  # type: ignore[attr-defined]
    workers = []
    for worker_id, raw in entries.items():
        entry = json.loads(raw)
        if entry.get("heartbeat_at", 0) >= cutoff:
            entry["id"] = worker_id.decode() if isinstance(worker_id, bytes) else str(worker_id)
            workers.append(entry)
    return workers


def health_report() -> tuple[bool, dict[str, Any]]:
    """(ok, report). Not ok when Redis or the database is unreachable or a queue has no live worker."""
    report: dict[str, Any] = {"redis": "ok", "database": "ok", "queues": {}}
    ok = True
    try:
        connection.ensure_connection()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as exc:
        logger.warning("Health: database unreachable: %s", exc)
        report["database"] = "unreachable"
        ok = False
    workers: list[dict[str, Any]] = []
    depths: dict[str, int] = {}
    try:
        broker = dramatiq.get_broker()
        workers = live_workers()
        for queue in queue_names():
            depths[queue] = broker.queue_depth(queue)  # type: ignore[attr-defined]
    except Exception as exc:
        logger.warning("Health: Redis unreachable: %s", exc)
        report["redis"] = "unreachable"
        ok = False
    oldest: dict[str, Any] = {}
    canary_latency: dict[str, float] = {}
    if report["database"] == "ok":
        now = timezone.now()
        for row in (
            Job.objects.filter(status=JobStatus.QUEUED).values("queue").annotate(oldest=Min("created_at")).order_by()
        ):
            oldest[row["queue"]] = round((now - row["oldest"]).total_seconds(), 1)
        recent = now - timedelta(hours=1)
        for queue in queue_names():
            canary = (
                Job.objects.filter(type="canary", queue=queue, started_at__isnull=False, created_at__gte=recent)
                .order_by("-created_at")
                .values(latency=F("started_at") - F("created_at"))
                .first()
            )
            if canary is not None:
                canary_latency[queue] = round(canary["latency"].total_seconds() * 1000, 1)
    for queue in queue_names():
        live = [worker for worker in workers if queue in worker.get("queues", [])]
        queue_ok = bool(live)
        ok = ok and queue_ok
        report["queues"][queue] = {
            "ok": queue_ok,
            "live_workers": len(live),
            "backlog": depths.get(queue),
            "oldest_waiting_s": oldest.get(queue, 0.0),
            "last_canary_latency_ms": canary_latency.get(queue),
        }
    report["ok"] = ok
    return ok, report
