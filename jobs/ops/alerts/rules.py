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
from django.db.models import DateTimeField, ExpressionWrapper, F, Q, QuerySet

from jobs.core.enums import StopReason
from jobs.core.queues import queue_names
from jobs.models import ACTIVE_STATUSES, Job, JobStatus
from jobs.ops.health import live_workers, queue_depths
from jobs.ops.stats import finished_totals


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
    """Customer jobs that finished within the window, per queue (``jobs.ops.stats``, the console's count).

    Canaries, children, schedules' and maintenance jobs are not counted: a
    queue's sixty canaries an hour made 3 failed exports of 10 read as 4 %.
    Below ``ALERT_FAILURE_RATE_MIN_JOBS`` jobs that ran to an end the rate is
    not judged at all (3 of 10 is noise as often as news); the console still
    shows those failures.
    """
    window = timedelta(seconds=settings.ALERT_FAILURE_RATE_WINDOW_S)
    breaches = []
    for queue, totals in finished_totals(now - window).items():
        ran = totals.completed + totals.failed
        rate = totals.failure_rate
        if ran < settings.ALERT_FAILURE_RATE_MIN_JOBS or rate is None:
            continue
        if rate > rule.threshold:
            breaches.append(
                Breach(
                    queue,
                    rate,
                    f"queue *{queue}*: {rate:.1%} of {ran} customer jobs failed in the last "
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


def slow_jobs_rule(
    key: str, title: str, job_type: str, *, what: str, from_request: bool = False, pages: bool = False
) -> Rule:
    """A rule breached by jobs of ``job_type`` that ran (or have waited and run) past the threshold.

    Measured from the start of the run, or with ``from_request`` from the
    job's creation (what the person who asked waits). Jobs still unfinished
    count as soon as they pass the threshold; finished ones while they are
    within ``ALERT_JOB_LOOKBACK_S``.
    """
    since = "created_at" if from_request else "started_at"
    unfinished = (JobStatus.ACTIVE,) if not from_request else ACTIVE_STATUSES

    def measure(rule: Rule, now: datetime) -> list[Breach]:
        limit = timedelta(seconds=rule.threshold)
        lookback = now - timedelta(seconds=settings.ALERT_JOB_LOOKBACK_S)
        running = Q(status__in=unfinished, **{f"{since}__lte": now - limit})
        finished = Q(finished_at__gte=lookback, status=JobStatus.COMPLETED) & Q(finished_at__gt=_plus(limit, since))
        return _slow_jobs(Job.objects.filter(Q(type=job_type) & (running | finished)), what, rule)

    return Rule(key, title, measure, pages=pages)


def timed_out_rule(key: str, title: str, job_type: str, *, what: str) -> Rule:
    """A rule breached when at least ``threshold`` jobs of ``job_type`` were stopped by their time limit lately."""

    def measure(rule: Rule, now: datetime) -> list[Breach]:
        lookback = now - timedelta(seconds=settings.ALERT_JOB_LOOKBACK_S)
        timed_out = Job.objects.filter(
            type=job_type,
            status=JobStatus.FAILED,
            finished_at__gte=lookback,
            error_message__startswith=StopReason.TIMED_OUT.value,
        )
        ids = list(timed_out.values_list("id", flat=True)[:3])
        if len(ids) < rule.threshold or not ids:
            return []
        count = timed_out.count()
        sample = ", ".join(str(job_id) for job_id in ids)
        return [Breach("", count, f"{count} {what} ended by their time limit (e.g. {sample})")]

    return Rule(key, title, measure)


def _plus(offset: timedelta, field: str) -> ExpressionWrapper:
    return ExpressionWrapper(F(field) + offset, output_field=DateTimeField())


#: The platform's own rules; domain apps add theirs with ``register_alert_rule``.
_PLATFORM_RULES: tuple[Rule, ...] = (
    Rule("backlog", "Queue backlog", _backlog),
    Rule("failure_rate", "Failure rate", _failure_rate),
    Rule("no_worker", "No live worker", _no_live_worker, pages=True),
    Rule("redis_memory", "Redis memory", _redis_memory),
)
_registered: dict[str, Rule] = {}

#: What domain apps register (the public name of ``Rule``).
AlertRule = Rule


def register_alert_rule(rule: Rule) -> Rule:
    """Have the evaluator measure ``rule`` every minute (call from the app's ``ready()``)."""
    _registered[rule.key] = rule
    return rule


def all_rules() -> tuple[Rule, ...]:
    return (*_PLATFORM_RULES, *_registered.values())


def get_rule(key: str) -> Rule:
    return next(rule for rule in all_rules() if rule.key == key)
