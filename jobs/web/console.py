"""The queue overview at ``/admin/queues/``: what waits, what ran, who works, whose work, and pause/resume.

Staff only, behind the admin's own login (``admin.site.admin_view``); seeing
the page takes the ``jobs.view_job`` permission, pausing a queue
``jobs.change_job``. Every number about finished jobs comes from the hourly
roll-ups in ``jobs.ops.stats``, so the page costs the same with millions of jobs.
Per queue it shows the queue table's cap on one owner's running jobs and the
busiest owners (fair dispatch's buckets, ``jobs.worker.fairqueue``), read from Redis.
The queues' finished-job figures count customer work only; child jobs,
schedules' jobs, canaries and maintenance have their own "system" section,
and the units the apps count (emails) theirs.

The page stays live by polling ``live.json`` (the same rows as JSON, charts
included as their SVG) every ``REFRESH_S`` while it is visible, and updating
the numbers in place. Polling, not the ``/ws/jobs/`` socket: the socket
carries job events (a staff subscriber receives every job's, which costs the
workers' publishing; see docs/architecture.md), while these numbers are
aggregates (a ``GROUP BY``, Redis depths, roll-ups, presence) that no event
carries; one small read every few seconds per open console is cheaper than
recounting on events. Pause and resume answer with an admin message and a
redirect, whatever happened.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import dramatiq
import redis
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path
from django.utils import timezone
from django.utils.safestring import SafeString
from django.views.decorators.http import require_GET, require_POST

from jobs.core.access import CONTROL_PERMISSION
from jobs.core.origin import AuditAction, JobOrigin, Origin, Via
from jobs.core.queues import UnknownQueue, all_queues
from jobs.dispatch.fairness import SYSTEM_BUCKET
from jobs.ops.health import live_workers
from jobs.ops.reconciler import last_reconcile
from jobs.ops.scheduling.presence import scheduler_entries
from jobs.ops.stats import (
    CUSTOMER_WORK,
    HOUR,
    Totals,
    floor_hour,
    live_counts,
    throughput_series,
    totals_by_origin,
    totals_by_queue,
    work_counts,
)
from jobs.state.audit import record_audit
from jobs.web.charts import throughput_chart
from jobs.worker.broker import OwnerLoad
from jobs.worker.pausing import pause_queue, paused_queues, resume_queue

logger = logging.getLogger(__name__)

VIEW_PERMISSION = "jobs.view_job"
PAUSE_PERMISSION = CONTROL_PERMISSION
#: Owners listed per queue, busiest (waiting + running) first.
BUSIEST_OWNERS = 5
#: Seconds between two refreshes of an open console (the task's bound: at most 5).
REFRESH_S = 5


@dataclass(frozen=True)
class OwnerRow:
    """One owner's share of a queue, with a name a person recognises."""

    bucket: str
    name: str
    waiting: int
    running: int


@dataclass
class QueueRow:
    """One queue as the overview shows it."""

    name: str
    constraint: str
    #: The queue table's cap on one owner's running jobs while others wait (0: none).
    max_per_owner: int
    counts: dict[str, int]
    last_24h: Totals
    chart_24h: SafeString
    chart_7d: SafeString
    paused: bool | None = None
    depth: int | None = None
    workers: list[dict[str, Any]] = field(default_factory=list)
    busiest_owners: list[OwnerRow] = field(default_factory=list)

    @property
    def avg_duration(self) -> str:
        return _seconds(self.last_24h.avg_duration_s)

    @property
    def p95_duration(self) -> str:
        return _seconds(self.last_24h.p95_duration_s)

    @property
    def failure_rate(self) -> str:
        rate = self.last_24h.failure_rate
        return "—" if rate is None else f"{rate:.1%}"

    def as_json(self) -> dict[str, Any]:
        """What the page's refresh puts in place: the cells' texts, the workers, the owners and the charts."""
        return {
            "name": self.name,
            "paused": self.paused,
            "counts": {status: self.counts.get(status, 0) for status in ("queued", "scheduled", "active", "retrying")},
            "depth": self.depth,
            "completed_24h": self.last_24h.completed,
            "failed_24h": self.last_24h.failed,
            "failure_rate": self.failure_rate,
            "avg_duration": self.avg_duration,
            "p95_duration": self.p95_duration,
            "workers": self.workers,
            "busiest_owners": [
                {"bucket": owner.bucket, "name": owner.name, "waiting": owner.waiting, "running": owner.running}
                for owner in self.busiest_owners
            ],
            # Server-rendered SVG, escaped where it is built (jobs.web.charts): the page inserts it as markup.
            "chart_24h": str(self.chart_24h),
            "chart_7d": str(self.chart_7d),
        }


@dataclass(frozen=True)
class ReconcilerView:
    """The reconciler's last pass as the console shows it."""

    ran: bool
    ok: bool = False
    age_s: float | None = None
    outcome: str = ""
    duration_s: float = 0.0

    @property
    def text(self) -> str:
        if not self.ran:
            return "no run recorded: is a scheduler (manage.py runscheduler) running?"
        return f"last run {self.age_s:.0f} s ago, took {self.duration_s:.2f} s: {self.outcome}"

    def as_json(self) -> dict[str, Any]:
        return {"ran": self.ran, "ok": self.ok, "text": self.text}


def reconciler_view() -> ReconcilerView | None:
    """The reconciler's last run (``jobs.ops.reconciler``), or None when Redis is unreachable."""
    try:
        broker: Any = dramatiq.get_broker()
        run = last_reconcile(broker)
        if run is None:
            return ReconcilerView(ran=False)
        age_s = max(0.0, broker.clock.now() - run.at)  # both on Redis's clock
    except redis.RedisError as exc:
        logger.warning("Queue overview: Redis unreachable: %s", exc)
        return None
    return ReconcilerView(ran=True, ok=run.ok, age_s=age_s, outcome=run.outcome, duration_s=run.duration_s)


@dataclass(frozen=True)
class OtherWorkRow:
    """Finished jobs of one origin other than a customer's (all queues), last 24 hours."""

    origin: str
    label: str
    totals: Totals

    @property
    def failure_rate(self) -> str:
        rate = self.totals.failure_rate
        return "—" if rate is None else f"{rate:.1%}"

    @property
    def avg_duration(self) -> str:
        return _seconds(self.totals.avg_duration_s)

    def as_json(self) -> dict[str, Any]:
        totals = self.totals
        return {
            "origin": self.origin,
            "cells": {
                "completed": totals.completed,
                "failed": totals.failed,
                "cancelled": totals.cancelled,
                "failure-rate": self.failure_rate,
                "avg-duration": self.avg_duration,
            },
        }


@dataclass(frozen=True)
class CounterRow:
    """A unit an app counts itself (emails), last 24 hours; ``counts`` None when the count failed."""

    name: str
    queue: str
    counts: dict[str, int] | None

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "counts": self.counts}


def other_work_rows(now: datetime) -> list[OtherWorkRow]:
    """The "system" section: children, schedules' jobs, canaries and maintenance, each apart."""
    totals = totals_by_origin(now - timedelta(hours=23), now + HOUR)
    return [
        OtherWorkRow(origin, JobOrigin(origin).label, row)
        for origin, row in totals.items()
        if origin not in CUSTOMER_WORK
    ]


def counter_rows(now: datetime) -> list[CounterRow]:
    counts = work_counts(floor_hour(now) - timedelta(hours=23), now)
    return [CounterRow(name, queue, values) for name, (queue, values) in counts.items()]


def _seconds(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.1f} s"


def _worker_view(entry: dict[str, Any], now: float) -> dict[str, Any]:
    return {
        "id": entry.get("id", ""),
        "host": entry.get("host", ""),
        "pid": entry.get("pid", ""),
        "threads": entry.get("threads", ""),
        "running": len(entry.get("running", [])),
        "processed": entry.get("processed", 0),
        "failed": entry.get("failed", 0),
        "heartbeat_age_s": round(max(0.0, now - float(entry.get("heartbeat_at", now))), 1),
    }


def owner_names(buckets: list[str]) -> dict[str, str]:
    """Display names of owner buckets: a user's username (and email), "system" for the shared bucket."""
    user_ids = {bucket[1:] for bucket in buckets if bucket.startswith("u") and bucket[1:].isdigit()}
    users = get_user_model().objects.filter(pk__in=[int(pk) for pk in user_ids])
    by_id = {str(pk): (username, email) for pk, username, email in users.values_list("pk", "username", "email")}
    names = {}
    for bucket in buckets:
        user_id = bucket[1:] if bucket.startswith("u") and bucket[1:].isdigit() else None
        if bucket == SYSTEM_BUCKET:
            names[bucket] = "system"
        elif user_id is None:
            names[bucket] = bucket
        elif user_id in by_id:
            username, email = by_id[user_id]
            names[bucket] = f"{username} <{email}>" if email and email != username else username
        else:
            names[bucket] = f"user {user_id} (deleted)"
    return names


def _busiest(loads: dict[str, list[OwnerLoad]]) -> dict[str, list[OwnerRow]]:
    """Per queue, its busiest owners with their names (one user query for the whole page)."""
    names = owner_names(sorted({load.owner for queue_loads in loads.values() for load in queue_loads}))
    return {
        queue: [OwnerRow(load.owner, names[load.owner], load.waiting, load.running) for load in queue_loads]
        for queue, queue_loads in loads.items()
    }


def queue_rows(now: datetime) -> tuple[list[QueueRow], bool]:
    """(rows, redis_ok): the database parts always; the Redis parts (workers, depth, paused, owners) when reachable."""
    counts = live_counts()
    last_24h = totals_by_queue(now - timedelta(hours=23), now + HOUR)
    hourly = throughput_series(now, 24, HOUR)
    six_hourly = throughput_series(now, 28, 6 * HOUR)
    rows = [
        QueueRow(
            name=policy.name,
            constraint=policy.constraint,
            max_per_owner=policy.max_per_owner,
            counts=counts.get(policy.name, {}),
            last_24h=last_24h.get(policy.name, Totals()),
            chart_24h=throughput_chart(
                hourly[policy.name], title=f"{policy.name}: last 24 hours", label_format="%H:00"
            ),
            chart_7d=throughput_chart(
                six_hourly[policy.name], title=f"{policy.name}: last 7 days", label_format="%d %b %H:00"
            ),
        )
        for policy in all_queues()
    ]
    try:
        broker: Any = dramatiq.get_broker()
        paused = paused_queues()
        workers = live_workers()
        now_s = broker.clock.now()  # presence entries carry Redis's time, not this host's
        loads: dict[str, list[OwnerLoad]] = {}
        for row in rows:
            row.paused = row.name in paused
            row.depth = broker.queue_depth(row.name)
            row.workers = [_worker_view(w, now_s) for w in workers if row.name in w.get("queues", [])]
            loads[row.name] = broker.owner_load(row.name)[:BUSIEST_OWNERS]
    except redis.RedisError as exc:
        logger.warning("Queue overview: Redis unreachable: %s", exc)
        return rows, False
    busiest = _busiest(loads)
    for row in rows:
        row.busiest_owners = busiest[row.name]
    return rows, True


def scheduler_rows() -> list[dict[str, Any]] | None:
    """The scheduler processes (host, pid, last beat, live), newest beat first; None when Redis is unreachable."""
    try:
        return scheduler_entries()
    except redis.RedisError as exc:
        logger.warning("Queue overview: scheduler presence unreadable: %s", exc)
        return None


@require_GET
def queue_overview(request: HttpRequest) -> HttpResponse:
    if not request.user.has_perm(VIEW_PERMISSION):
        raise PermissionDenied
    now = timezone.now()
    rows, redis_ok = queue_rows(now)
    context = {
        "schedulers": scheduler_rows() if redis_ok else None,
        **admin.site.each_context(request),
        "title": "Queues",
        "rows": rows,
        "other_work": other_work_rows(now),
        "counters": counter_rows(now),
        "redis_ok": redis_ok,
        "reconciler": reconciler_view() if redis_ok else None,
        "now": now,
        "may_pause": request.user.has_perm(PAUSE_PERMISSION),
        "refresh_s": REFRESH_S,
        "refresh_ms": REFRESH_S * 1000,
    }
    return TemplateResponse(request, "admin/queues.html", context)


@require_GET
def queue_overview_data(request: HttpRequest) -> JsonResponse:
    """``live.json``: what the open page refreshes, in one read (same permission as the page)."""
    if not request.user.has_perm(VIEW_PERMISSION):
        raise PermissionDenied
    now = timezone.now()
    rows, redis_ok = queue_rows(now)
    reconciler = reconciler_view() if redis_ok else None
    return JsonResponse(
        {
            "generated_at": now.isoformat(),
            "redis_ok": redis_ok,
            "reconciler": reconciler.as_json() if reconciler is not None else None,
            "queues": [row.as_json() for row in rows],
            "other_work": [work.as_json() for work in other_work_rows(now)],
            "counters": [counter.as_json() for counter in counter_rows(now)],
            "schedulers": scheduler_rows() if redis_ok else None,
        }
    )


def _set_paused(request: HttpRequest, queue: str, *, pause: bool) -> HttpResponse:
    if not request.user.has_perm(PAUSE_PERMISSION):
        raise PermissionDenied
    verb = "pause" if pause else "resume"
    try:
        (pause_queue if pause else resume_queue)(queue)
        record_audit(
            AuditAction.PAUSE if pause else AuditAction.RESUME, Origin.of_user(request.user, Via.ADMIN), "queue", queue
        )
    except UnknownQueue:
        messages.error(request, f"There is no queue {queue!r}: nothing was changed.")
        return redirect("admin-queues")
    except redis.RedisError as exc:
        logger.warning("Could not %s queue %s: Redis unreachable: %s", verb, queue, exc)
        messages.error(request, f"Could not {verb} queue {queue}: Redis is unreachable, the queue was not changed.")
        return redirect("admin-queues")
    logger.info("Queue %s %s by %s", queue, "paused" if pause else "resumed", request.user)
    if pause:
        messages.warning(request, f"Queue {queue} paused: its jobs wait until you resume it.")
    else:
        messages.success(request, f"Queue {queue} resumed.")
    return redirect("admin-queues")


@require_POST
def pause_queue_view(request: HttpRequest, queue: str) -> HttpResponse:
    return _set_paused(request, queue, pause=True)


@require_POST
def resume_queue_view(request: HttpRequest, queue: str) -> HttpResponse:
    return _set_paused(request, queue, pause=False)


#: Included at ``admin/queues/`` ahead of the admin's own URLs (see config/urls.py).
urlpatterns = [
    path("", admin.site.admin_view(queue_overview), name="admin-queues"),
    path("live.json", admin.site.admin_view(queue_overview_data), name="admin-queues-data"),
    path("<str:queue>/pause", admin.site.admin_view(pause_queue_view), name="admin-queue-pause"),
    path("<str:queue>/resume", admin.site.admin_view(resume_queue_view), name="admin-queue-resume"),
]
