"""Job statistics for the console, the reports, the alerts, ``/metrics`` and the datasets: the one place.

Every figure is kept per origin (``jobs.core.origin.JobOrigin``): customer
work (``CUSTOMER_WORK``) is what operators judge the service by, and the
readers here count it apart from child jobs (an OCR's page ranges, a
document's thumbnails, email batches), schedules' jobs, canaries and
maintenance. A fan-out parent counts once, from its start to its last
child's end (its row stays ``active`` while it waits; ``started_at`` is its
claim's); its children count as ``child`` work.

``roll_up`` (a scheduler duty, every ``JOBS_STATS_ROLLUP_INTERVAL_S``)
recomputes the current and the previous UTC hour from the Job rows that
finished in them, plus any hour since its last run; each hour is replaced
whole, so re-running is harmless and a job committed just after the hour
turned is still counted. Readers sum ``JobStatsBucket`` rows: a week is at
most 168 rows per queue, type and origin, however many jobs ran. Windows that
are not whole hours (the failure-rate alert's last hour) are counted from the
Job rows by the same aggregation (``finished_totals``). Counts of the current
state (waiting, active, ...) come from the ``(status, queue)`` index, which
only holds unfinished jobs in any number worth counting.

Hours before ``sealed_until()`` (the watermark less an hour) are sealed: the
duty never recounts them, which is what lets ``/metrics`` read them as
counters that only rise (``jobs.ops.counters``), its live part since the seal
line counted by the same aggregation (``finished_since``). No hour older than
``recount_horizon()`` is recounted at all: the cleanup may have deleted its
Job rows, and its buckets (never pruned) are then the only record.

Domain apps add counts of their own units (campaigns: emails sent, bounced
and failed, not email jobs) with ``register_work_counter``; the console and
the weekly report show them.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Case, Count, DurationField, ExpressionWrapper, F, Q, QuerySet, Sum, Value, When
from django.utils import timezone

from jobs.core.origin import JobOrigin
from jobs.core.queues import queue_names
from jobs.models import ACTIVE_STATUSES, Job, JobStatus
from jobs.models.stats import ROLLUP, JobStatsBucket, JobStatsCarry, StatsWatermark

logger = logging.getLogger(__name__)

HOUR = timedelta(hours=1)
#: Upper bounds (seconds) of the duration histogram's slots; one more slot holds everything slower.
DURATION_BOUNDS_S: tuple[float, ...] = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
FINISHED_STATUSES = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)
_WAITING_AND_ACTIVE = tuple(status.value for status in ACTIVE_STATUSES)
#: What the console's and the report's queue figures, the failure-rate alert and the datasets'
#: customer rows count: jobs customers asked for. Everything else is counted apart.
CUSTOMER_WORK: tuple[str, ...] = (JobOrigin.CUSTOMER.value,)
#: The order the other origins are shown in ("system" sections).
OTHER_WORK: tuple[str, ...] = (
    JobOrigin.CHILD.value,
    JobOrigin.SCHEDULE.value,
    JobOrigin.CANARY.value,
    JobOrigin.MAINTENANCE.value,
)


def floor_hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def hours_between(start: datetime, end: datetime) -> Iterator[datetime]:
    """Every hour start from ``start``'s hour up to and including ``end``'s hour."""
    hour = floor_hour(start)
    while hour <= end:
        yield hour
        hour += HOUR


# -- writing ------------------------------------------------------------------


def _histogram_slot() -> Case:
    whens = [When(run_time__lt=timedelta(seconds=bound), then=Value(i)) for i, bound in enumerate(DURATION_BOUNDS_S)]
    return Case(*whens, default=Value(len(DURATION_BOUNDS_S)))


def _aggregate(jobs: QuerySet[Any]) -> dict[tuple[str, str, str], Totals]:
    """Finished jobs of ``jobs`` summed per (queue, type, origin): the one count every reader builds on.

    ``jobs`` may be a historical model's queryset (the origin migration recounts with it),
    or carried jobs (``JobStatsCarry`` keeps the same fields).
    """
    rows = (
        jobs.filter(status__in=FINISHED_STATUSES)
        .annotate(run_time=ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField()))
        .annotate(slot=_histogram_slot())
        .values("queue", "type", "origin", "status", "slot")
        .annotate(
            jobs=Count("id"),
            retried=Count("id", filter=Q(attempts__gt=1)),
            timed=Count("id", filter=Q(started_at__isnull=False)),
            run_time_sum=Sum("run_time"),
        )
        .order_by()
    )
    totals: dict[tuple[str, str, str], Totals] = {}
    for row in rows:
        total = totals.setdefault((row["queue"], row["type"], row["origin"]), Totals())
        total.retried += row["retried"]
        if row["status"] == JobStatus.FAILED:
            total.failed += row["jobs"]
        elif row["status"] == JobStatus.CANCELLED:
            total.cancelled += row["jobs"]
        else:
            total.completed += row["jobs"]
            if row["timed"]:
                total.duration_count += row["timed"]
                total.duration_sum_s += row["run_time_sum"].total_seconds()
                total.histogram[row["slot"]] += row["timed"]
    return totals


def hour_buckets(
    hour: datetime, job_model: Any = Job, bucket_model: Any = JobStatsBucket, carry_model: Any = JobStatsCarry
) -> list[Any]:
    """The buckets of one hour, counted from the Job rows that finished in it and the carried ones (unsaved).

    ``carry_model`` None: Job rows only (a migration older than the carries).
    """
    in_hour = {"finished_at__gte": hour, "finished_at__lt": hour + HOUR}
    totals = _aggregate(job_model.objects.filter(**in_hour))
    if carry_model is not None:
        _merge_into(totals, _aggregate(carry_model.objects.filter(**in_hour)))
    return _buckets(totals, hour, bucket_model)


def finished_since(moment: datetime) -> list[JobStatsBucket]:
    """Unsaved buckets, labelled ``moment``, of every job finished at or after it: the counters' unsealed part.

    Counted by the very code that fills the hourly buckets, so the hand-over from
    this live count to a sealed bucket neither loses nor adds a job. The carries
    (jobs deleted or retried since they finished) count with the rows: read both
    in one snapshot (``lifetime_totals``), or a delete committed in between
    counts its job twice or not at all.
    """
    totals = _aggregate(JobStatsCarry.objects.filter(finished_at__gte=moment))
    _merge_into(totals, _aggregate(Job.objects.filter(finished_at__gte=moment)))
    return _buckets(totals, moment, JobStatsBucket)


def _merge_into(totals: dict[tuple[str, str, str], Totals], more: dict[tuple[str, str, str], Totals]) -> None:
    for labels, total in more.items():
        totals.setdefault(labels, Totals()).merge(total)


def _buckets(totals: dict[tuple[str, str, str], Totals], hour: datetime, bucket_model: Any) -> list[Any]:
    now = timezone.now()
    return [
        bucket_model(
            queue=queue,
            type=job_type,
            origin=origin,
            hour=hour,
            completed=total.completed,
            failed=total.failed,
            cancelled=total.cancelled,
            retried=total.retried,
            duration_sum_s=total.duration_sum_s,
            duration_count=total.duration_count,
            duration_histogram=total.histogram,
            computed_at=now,
        )
        for (queue, job_type, origin), total in totals.items()
    ]


def _lock_rollup() -> StatsWatermark:
    """Serialize roll-ups (several schedulers may run): hold the watermark row until commit."""
    StatsWatermark.objects.get_or_create(name=ROLLUP)
    return StatsWatermark.objects.select_for_update().get(name=ROLLUP)


def recount_horizon() -> datetime:
    """The oldest hour start that may be recounted: the cleanup may have deleted Job rows of older hours.

    The cleanup deletes jobs finished before ``JOBS_RETENTION_DAYS`` ago (and,
    by cascade, their children); the extra hour spares children that finished
    a little after their parent. Recounting such an hour would lower its
    buckets, and with them the counters of ``/metrics``.
    """
    return timezone.now() - timedelta(days=settings.JOBS_RETENTION_DAYS) + HOUR


def roll_up_hour(hour: datetime) -> int:
    """Replace the buckets of the hour holding ``hour`` by a fresh count of its Job rows; returns their number.

    An hour older than ``recount_horizon()`` keeps its buckets (returns 0).
    """
    start = floor_hour(hour)
    if start < recount_horizon():
        logger.warning("Not recounting the hour of %s: older than the cleanup's horizon", start.isoformat())
        return 0
    with transaction.atomic():
        _lock_rollup()
        buckets = hour_buckets(start)
        JobStatsBucket.objects.filter(hour=start).delete()
        JobStatsBucket.objects.bulk_create(buckets)
    return len(buckets)


def roll_up_hours(start: datetime, end: datetime) -> None:
    """Recompute every hour from ``start`` to ``end`` (after importing or editing old Job rows)."""
    for hour in hours_between(start, end):
        roll_up_hour(hour)


def roll_up(now: datetime | None = None) -> None:
    """The scheduler duty: the hours since the last run, from the hour before it (late commits) to now.

    One transaction: the hours it seals are recounted in the same commit that
    moves the watermark past them, so ``/metrics`` never sees an hour both in
    a bucket and in its live count, nor in neither. It starts at the last
    unsealed hour, even when ``now`` is earlier than the watermark.
    """
    current = floor_hour(now or timezone.now())
    with transaction.atomic():
        watermark = _lock_rollup()
        if watermark.rolled_until is None:
            start = current - timedelta(hours=settings.JOBS_STATS_BACKFILL_HOURS)
        else:
            start = watermark.rolled_until - HOUR
        roll_up_hours(start, current)
        if watermark.rolled_until is None or watermark.rolled_until < current:
            watermark.rolled_until = current
            watermark.save(update_fields=["rolled_until"])


def sealed_until() -> datetime | None:
    """Hours before this are sealed (never recounted by ``roll_up``); None before the first roll-up."""
    rolled_until = StatsWatermark.objects.filter(name=ROLLUP).values_list("rolled_until", flat=True).first()
    return None if rolled_until is None else rolled_until - HOUR


# -- reading ------------------------------------------------------------------


@dataclass
class Totals:
    """Finished jobs over some hours, summed from buckets."""

    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    retried: int = 0
    duration_sum_s: float = 0.0
    duration_count: int = 0
    histogram: list[int] = field(default_factory=lambda: [0] * (len(DURATION_BOUNDS_S) + 1))

    def add(self, row: dict[str, Any]) -> None:
        self.completed += row["completed"]
        self.failed += row["failed"]
        self.cancelled += row["cancelled"]
        self.retried += row["retried"]
        self.duration_sum_s += row["duration_sum_s"]
        self.duration_count += row["duration_count"]
        for slot, count in enumerate(row["duration_histogram"][: len(self.histogram)]):
            self.histogram[slot] += count

    def merge(self, other: Totals) -> None:
        self.add(
            {
                "completed": other.completed,
                "failed": other.failed,
                "cancelled": other.cancelled,
                "retried": other.retried,
                "duration_sum_s": other.duration_sum_s,
                "duration_count": other.duration_count,
                "duration_histogram": other.histogram,
            }
        )

    @property
    def jobs(self) -> int:
        return self.completed + self.failed + self.cancelled

    @property
    def success_rate(self) -> float | None:
        return self.completed / self.jobs if self.jobs else None

    @property
    def failure_rate(self) -> float | None:
        """Failed among the jobs that ran to an end (cancelled ones did not)."""
        ran = self.completed + self.failed
        return self.failed / ran if ran else None

    @property
    def avg_duration_s(self) -> float | None:
        return self.duration_sum_s / self.duration_count if self.duration_count else None

    @property
    def p95_duration_s(self) -> float | None:
        return histogram_percentile(self.histogram, 0.95)


def histogram_percentile(histogram: list[int], fraction: float) -> float | None:
    """The percentile, interpolated inside its slot; the slowest slot answers with its lower bound."""
    total = sum(histogram)
    if not total:
        return None
    rank = max(1, math.ceil(fraction * total))
    seen = 0
    for slot, count in enumerate(histogram):
        if seen + count >= rank:
            lower = DURATION_BOUNDS_S[slot - 1] if slot else 0.0
            if slot == len(DURATION_BOUNDS_S):
                return float(lower)
            return lower + (DURATION_BOUNDS_S[slot] - lower) * (rank - seen) / count
        seen += count
    return float(DURATION_BOUNDS_S[-1])  # pragma: no cover - the loop always reaches the rank


_BUCKET_FIELDS = (
    "queue",
    "origin",
    "hour",
    "completed",
    "failed",
    "cancelled",
    "retried",
    "duration_sum_s",
    "duration_count",
    "duration_histogram",
)


def _bucket_rows(start: datetime, end: datetime, origins: Iterable[str] | None) -> Iterator[dict[str, Any]]:
    """Bucket rows of the hours starting in ``[floor_hour(start), end)``, of ``origins`` (None: all)."""
    buckets = JobStatsBucket.objects.filter(hour__gte=floor_hour(start), hour__lt=end)
    if origins is not None:
        buckets = buckets.filter(origin__in=list(origins))
    yield from buckets.values(*_BUCKET_FIELDS)


def totals_by_queue(start: datetime, end: datetime, origins: Iterable[str] = CUSTOMER_WORK) -> dict[str, Totals]:
    """Every queue of the queue table (and any other that has buckets), summed over the hours.

    Customer work only, unless ``origins`` says otherwise.
    """
    totals: dict[str, Totals] = {name: Totals() for name in queue_names()}
    for row in _bucket_rows(start, end, origins):
        totals.setdefault(row["queue"], Totals()).add(row)
    return totals


def totals_by_origin(start: datetime, end: datetime) -> dict[str, Totals]:
    """Every origin (customer first, then ``OTHER_WORK``), summed over all queues and the hours."""
    totals: dict[str, Totals] = {origin: Totals() for origin in (*CUSTOMER_WORK, *OTHER_WORK)}
    for row in _bucket_rows(start, end, None):
        totals.setdefault(row["origin"], Totals()).add(row)
    return totals


def summary(totals: Totals) -> dict[str, Any]:
    """The figures a report shows for some finished jobs."""
    return {
        "jobs": totals.jobs,
        "succeeded": totals.completed,
        "failed": totals.failed,
        "cancelled": totals.cancelled,
        "success_rate": totals.success_rate,
        "avg_duration_s": totals.avg_duration_s,
        "p95_duration_s": totals.p95_duration_s,
    }


def queue_summary(start: datetime, end: datetime, origins: Iterable[str] = CUSTOMER_WORK) -> dict[str, dict[str, Any]]:
    """Per queue: customer jobs (or ``origins``') finished in the hours from ``start`` to ``end``, and how they went.

    Hour granularity: an hour counts when it starts in ``[floor_hour(start), end)``.
    ``jobs`` counts completed, failed and cancelled jobs; durations are those of
    completed jobs (p95 read from the histogram, exact to its slot).
    """
    return {queue: summary(totals) for queue, totals in totals_by_queue(start, end, origins).items()}


def other_work_summary(start: datetime, end: datetime) -> dict[str, dict[str, Any]]:
    """Per origin other than a customer's (children, schedules, canaries, maintenance), all queues together."""
    totals = totals_by_origin(start, end)
    return {origin: summary(totals[origin]) for origin in totals if origin not in CUSTOMER_WORK}


@dataclass(frozen=True)
class SeriesPoint:
    start: datetime
    completed: int
    failed: int

    @property
    def failure_rate(self) -> float | None:
        ran = self.completed + self.failed
        return self.failed / ran if ran else None


def throughput_series(
    end: datetime, periods: int, step: timedelta, origins: Iterable[str] = CUSTOMER_WORK
) -> dict[str, list[SeriesPoint]]:
    """Per queue, ``periods`` consecutive periods of ``step`` (whole hours), the last one ending with ``end``'s hour."""
    stop = floor_hour(end) + HOUR
    first = stop - step * periods
    counts: dict[str, list[list[int]]] = defaultdict(lambda: [[0, 0] for _ in range(periods)])
    for name in queue_names():
        counts[name]  # noqa: B018 - every queue gets a series, busy or not
    for row in _bucket_rows(first, stop, origins):
        index = int((row["hour"] - first) // step)
        if 0 <= index < periods:
            counts[row["queue"]][index][0] += row["completed"]
            counts[row["queue"]][index][1] += row["failed"]
    return {
        queue: [SeriesPoint(first + step * i, done, failed) for i, (done, failed) in enumerate(points)]
        for queue, points in counts.items()
    }


# -- windows that are not whole hours, counted from the Job rows ------------------


def finished_totals(
    since: datetime, until: datetime | None = None, origins: Iterable[str] = CUSTOMER_WORK
) -> dict[str, Totals]:
    """Per queue, the jobs of ``origins`` that finished in ``[since, until)`` (the ``finished_at`` index)."""
    jobs = Job.objects.filter(finished_at__gte=since, origin__in=list(origins))
    if until is not None:
        jobs = jobs.filter(finished_at__lt=until)
    totals: dict[str, Totals] = {}
    for (queue, _type, _origin), total in _aggregate(jobs).items():
        totals.setdefault(queue, Totals()).merge(total)
    return totals


# -- a domain app's own units (emails, not email jobs) ---------------------------


@dataclass(frozen=True)
class WorkCounter:
    """Units of work a domain app counts itself, shown next to a queue's jobs.

    ``count(start, end)`` answers outcome -> number for the units finished in
    ``[start, end)`` (campaigns: ``{"sent": .., "bounced": .., "failed": ..}``).
    """

    name: str
    queue: str
    count: Callable[[datetime, datetime], dict[str, int]]


_counters: dict[str, WorkCounter] = {}


def register_work_counter(name: str, queue: str, count: Callable[[datetime, datetime], dict[str, int]]) -> None:
    """Have the console and the weekly report show ``name`` (call from the app's ``ready()``)."""
    _counters[name] = WorkCounter(name, queue, count)


def work_counts(start: datetime, end: datetime) -> dict[str, tuple[str, dict[str, int] | None]]:
    """Every registered counter: name -> (queue, counts); counts None when the counter failed (logged)."""
    counts: dict[str, tuple[str, dict[str, int] | None]] = {}
    for counter in _counters.values():
        try:
            counts[counter.name] = (counter.queue, dict(counter.count(start, end)))
        except Exception:
            logger.exception("Work counter %r failed", counter.name)
            counts[counter.name] = (counter.queue, None)
    return counts


def live_counts() -> dict[str, dict[str, int]]:
    """Per queue, how many jobs are in each unfinished state now (from the status index)."""
    counts: dict[str, dict[str, int]] = {name: dict.fromkeys(_WAITING_AND_ACTIVE, 0) for name in queue_names()}
    rows = (
        Job.objects.filter(status__in=ACTIVE_STATUSES).values("queue", "status").annotate(jobs=Count("id")).order_by()
    )
    for row in rows:
        counts.setdefault(row["queue"], dict.fromkeys(_WAITING_AND_ACTIVE, 0))[row["status"]] = row["jobs"]
    return counts
