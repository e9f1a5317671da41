"""Lifetime totals of finished jobs, for the counters of ``/metrics``: they only ever rise.

A total is the sum of every *sealed* hourly bucket (``JobStatsBucket``, hours
before ``stats.sealed_until()``) plus a live count of the Job rows finished
since then, taken by the same code that fills the buckets. Both live in the
database, so every web process answers the same; buckets are never pruned and
sealed hours never recounted, so the monthly cleanup of old Job rows lowers
nothing. Before the first roll-up there is no seal line and no totals.

Everything is read in one snapshot (REPEATABLE READ on PostgreSQL; a SQLite
read transaction is one already): the seal line, the buckets before it, and
the rows and carries after it. A roll-up that moves the line, or a staff
delete or retry that moves a finished job from the Job table into
``JobStatsCarry``, is then seen whole or not at all, so no job is counted
twice or missed for one scrape, which Prometheus would read as a reset.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import IntegerField, Sum
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast

from jobs.models.stats import JobStatsBucket
from jobs.ops.stats import DURATION_BOUNDS_S, Totals, finished_since, sealed_until

#: The label fields of a bucket, which are the counters' labels, in order (a new bucket dimension joins here).
BUCKET_LABELS: tuple[str, ...] = ("queue", "type", "origin")
_SUMMED = ("completed", "failed", "cancelled", "retried", "duration_sum_s", "duration_count")
_SLOTS = len(DURATION_BOUNDS_S) + 1


def lifetime_totals() -> dict[tuple[str, ...], Totals]:
    """Per ``BUCKET_LABELS`` values: every job finished since the first roll-up's back-fill, sealed and live."""
    opens_transaction = not connection.in_atomic_block
    with transaction.atomic():
        if opens_transaction:
            _read_one_snapshot()
        line = sealed_until()
        if line is None:
            return {}
        totals: dict[tuple[str, ...], Totals] = defaultdict(Totals)
        for row in _sealed_sums(line):
            totals[tuple(row[label] for label in BUCKET_LABELS)].add(row)
        for bucket in finished_since(line):
            totals[tuple(getattr(bucket, label) for label in BUCKET_LABELS)].add(
                {name: getattr(bucket, name) for name in (*_SUMMED, "duration_histogram")}
            )
    return dict(totals)


def _read_one_snapshot() -> None:
    """Make the transaction just opened read one snapshot (PostgreSQL's default gives each statement its own)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")


def _sealed_sums(line: datetime) -> list[dict[str, Any]]:
    """The sealed buckets summed in SQL: one row per label values, however many hours have been sealed."""
    sums = {f"sum_{name}": Sum(name) for name in _SUMMED}
    slots = {
        f"slot_{slot}": Sum(Cast(KeyTextTransform(str(slot), "duration_histogram"), IntegerField()))
        for slot in range(_SLOTS)
    }
    rows = (
        JobStatsBucket.objects.filter(hour__lt=line)
        .values(*BUCKET_LABELS)
        .annotate(**sums, **slots)
        .order_by(*BUCKET_LABELS)
    )
    return [
        {
            **{label: row[label] for label in BUCKET_LABELS},
            **{name: row[f"sum_{name}"] or 0 for name in _SUMMED},
            "duration_histogram": [row[f"slot_{slot}"] or 0 for slot in range(_SLOTS)],
        }
        for row in rows
    ]
