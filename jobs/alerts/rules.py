"""The alert rules: what each measures, and when it is breached.

Each rule reads ``ALERT_<KEY>_THRESHOLD`` and ``ALERT_<KEY>_FOR_S`` (how long
the breach must hold before the alert fires) from the settings at every
evaluation. ``measure`` returns the breached subjects (a queue, or "" for
the whole system); ``None`` means "could not measure", and then the rule's
open alerts are left as they are rather than resolved.

Every query is bounded in time and served by an index of the job table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import dramatiq
from django.conf import settings
from django.db.models import Count, DateTimeField, ExpressionWrapper, F, Q, QuerySet

from jobs.alerts.inputs import EMAIL_SENT_PER_MINUTE, rule_input
from jobs.health import live_workers, queue_depths
from jobs.models import ACTIVE_STATUSES, Job, JobStatus
from jobs.queues import queue_names

#: Job types and queues some rules watch. Names only: ``jobs`` imports no domain app.
OCR_JOB_TYPE = "pdf-ocr"
THUMBNAILS_JOB_TYPE = "thumbnails"
EXPORT_QUEUE = "csv-export"
#: The error the watchdog writes on a job stopped by its queue's time limit.
TIME_LIMIT_ERROR_PREFIX = "timed out after"


@dataclass(frozen=True)
class Breach:
    subject: str
    value: float
    summary: str


@dataclass(frozen=True)
class Rule:
    key: str
    title: str
    measure: Callable[[Rule, datetime], list[Breach] | None]
    #: Also post to ``PAGER_WEBHOOK_URL``.
    pages: bool = False

    @property
    def threshold(self) -> float:
        return float(getattr(settings, f"ALERT_{self.key.upper()}_THRESHOLD"))

    @property
    def for_s(self) -> float:
        return float(getattr(settings, f"ALERT_{self.key.upper()}_FOR_S"))


def _backlog(rule: Rule, now: datetime) -> list[Breach]:
    return [
        Breach(queue, depth, f"queue *{queue}*: {depth} jobs waiting (threshold {rule.threshold:g})")
        for queue, depth in queue_depths().items()
        if depth > rule.threshold
    ]


def _failure_rate(rule: Rule, now: datetime) -> list[Breach]:
    window = timedelta(seconds=settings.ALERT_FAILURE_RATE_WINDOW_S)
    rows = (
        Job.objects.filter(created_at__gte=now - window, status__in=(JobStatus.COMPLETED, JobStatus.FAILED))
        .values("queue")
        .annotate(total=Count("id"), failed=Count("id", filter=Q(status=JobStatus.FAILED)))
        .order_by()
    )
    breaches = []
    for row in rows:
        if row["total"] < settings.ALERT_FAILURE_RATE_MIN_JOBS:
            continue
        rate = row["failed"] / row["total"]
        if rate > rule.threshold:
            breaches.append(
                Breach(
                    row["queue"],
                    rate,
                    f"queue *{row['queue']}*: {rate:.1%} of {row['total']} jobs failed in the last "
                    f"{window} (threshold {rule.threshold:.1%})",
                )
            )
    return breaches


def _no_live_worker(rule: Rule, now: datetime) -> list[Breach]:
    alive = live_workers()
    breaches = []
    for queue in queue_names():
        count = sum(1 for worker in alive if queue in worker.get("queues", []))
        if count < rule.threshold:
            breaches.append(Breach(queue, count, f"queue *{queue}* has no live worker: nothing is consuming it"))
    return breaches


def _redis_memory(rule: Rule, now: datetime) -> list[Breach]:
    info = dramatiq.get_broker().client.info("memory")  # type: ignore[attr-defined]
    limit = int(info.get("maxmemory") or 0) or int(info.get("total_system_memory") or 0)
    if limit <= 0:
        return []
    used = int(info["used_memory"])
    ratio = used / limit
    if ratio <= rule.threshold:
        return []
    of_what = "maxmemory" if info.get("maxmemory") else "the machine's memory"
    return [
        Breach(
            "", ratio, f"Redis uses {ratio:.0%} of {of_what} ({used / 2**20:.0f} MB; threshold {rule.threshold:.0%})"
        )
    ]


def _slow_jobs(jobs: QuerySet[Job], what: str, rule: Rule) -> list[Breach]:
    offenders = list(jobs.values_list("id", flat=True)[:4])
    if not offenders:
        return []
    count = jobs.count()
    sample = ", ".join(str(job_id) for job_id in offenders[:3])
    return [Breach("", count, f"{count} {what} over {rule.threshold:g} s (e.g. {sample})")]


def _ocr_duration(rule: Rule, now: datetime) -> list[Breach]:
    """An OCR document over the threshold from start to finish: still running, or finished lately."""
    limit = timedelta(seconds=rule.threshold)
    lookback = now - timedelta(seconds=settings.ALERT_JOB_LOOKBACK_S)
    running = Q(status=JobStatus.ACTIVE, started_at__lte=now - limit)
    finished = Q(finished_at__gte=lookback, status=JobStatus.COMPLETED) & Q(finished_at__gt=_plus(limit, "started_at"))
    return _slow_jobs(Job.objects.filter(Q(type=OCR_JOB_TYPE) & (running | finished)), "OCR documents took", rule)


def _thumbnails_duration(rule: Rule, now: datetime) -> list[Breach]:
    """Thumbnails over the threshold from request (the job's creation) to done."""
    limit = timedelta(seconds=rule.threshold)
    lookback = now - timedelta(seconds=settings.ALERT_JOB_LOOKBACK_S)
    waiting = Q(status__in=ACTIVE_STATUSES, created_at__lte=now - limit)
    finished = Q(finished_at__gte=lookback, status=JobStatus.COMPLETED) & Q(finished_at__gt=_plus(limit, "created_at"))
    return _slow_jobs(
        Job.objects.filter(Q(type=THUMBNAILS_JOB_TYPE) & (waiting | finished)), "thumbnail jobs took", rule
    )


def _plus(offset: timedelta, field: str) -> ExpressionWrapper:
    return ExpressionWrapper(F(field) + offset, output_field=DateTimeField())


def _export_timeout(rule: Rule, now: datetime) -> list[Breach]:
    lookback = now - timedelta(seconds=settings.ALERT_JOB_LOOKBACK_S)
    timed_out = Job.objects.filter(
        queue=EXPORT_QUEUE,
        status=JobStatus.FAILED,
        finished_at__gte=lookback,
        error_message__startswith=TIME_LIMIT_ERROR_PREFIX,
    )
    ids = list(timed_out.values_list("id", flat=True)[:3])
    if len(ids) < rule.threshold or not ids:
        return []
    count = timed_out.count()
    sample = ", ".join(str(job_id) for job_id in ids)
    return [Breach("", count, f"{count} exports ended by their time limit (e.g. {sample})")]


def _email_rate(rule: Rule, now: datetime) -> list[Breach] | None:
    measure = rule_input(EMAIL_SENT_PER_MINUTE)
    if measure is None:
        return None  # no app provides it: not evaluated
    rate = measure()
    if rate is None or rate >= rule.threshold:
        return []
    return [Breach("", rate, f"a campaign is sending at {rate:g} emails/min (threshold {rule.threshold:g}/min)")]


RULES: tuple[Rule, ...] = (
    Rule("backlog", "Queue backlog", _backlog),
    Rule("failure_rate", "Failure rate", _failure_rate),
    Rule("no_worker", "No live worker", _no_live_worker, pages=True),
    Rule("redis_memory", "Redis memory", _redis_memory),
    Rule("ocr_duration", "Slow OCR", _ocr_duration),
    Rule("email_rate", "Slow email sending", _email_rate),
    Rule("export_timeout", "Export timed out", _export_timeout),
    Rule("thumbnails_duration", "Slow thumbnails", _thumbnails_duration),
)


def get_rule(key: str) -> Rule:
    return next(rule for rule in RULES if rule.key == key)
