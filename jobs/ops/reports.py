"""The weekly report: per queue, customer jobs, success rate and average duration, posted to Slack.

The numbers are the console's (``jobs.ops.stats``, hourly roll-ups), so the
report and ``/admin/queues/`` never disagree. The queue table counts
customer requests only; a "System work" table counts child jobs, schedules'
jobs, canaries and maintenance apart, and the units apps count themselves
(``register_work_counter``: campaigns' emails sent, bounced and failed) get a
line each. A domain app adds a column of its own for a queue (campaigns: the
email delivery rate) with ``register_report_column``; ``jobs`` imports no
domain app.

Sent every Monday by the ``weekly report`` schedule (job type
``weekly-report``) and on demand by ``manage.py weekly_report [--dry-run]``;
it covers the last full week, Monday 00:00 to Monday 00:00 UTC.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import dramatiq
from django.utils import timezone
from rest_framework import serializers

from jobs.core.origin import JobOrigin
from jobs.dispatch.registry import JobPlan, JobType, register_job_type
from jobs.ops.alerts.notifier import post_slack
from jobs.ops.stats import other_work_summary, queue_summary, roll_up, work_counts

logger = logging.getLogger(__name__)

REPORT_JOB_TYPE = "weekly-report"
REPORT_ACTOR = "send_weekly_report"


@dataclass(frozen=True)
class ReportColumn:
    title: str
    queue: str
    #: (start, end) -> the cell's value as text, or None for "no data".
    value: Callable[[datetime, datetime], str | None]


_columns: list[ReportColumn] = []


def register_report_column(title: str, queue: str, value: Callable[[datetime, datetime], str | None]) -> None:
    """An extra column for one queue's row (other rows show a dash)."""
    _columns[:] = [column for column in _columns if (column.title, column.queue) != (title, queue)]
    _columns.append(ReportColumn(title, queue, value))


@dataclass
class WeeklyReport:
    start: datetime
    end: datetime
    rows: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Extra column title -> {queue: text}.
    extra: dict[str, dict[str, str]] = field(default_factory=dict)
    #: Origin -> figures, for the work that is not a customer's (children, schedules, canaries, maintenance).
    other_work: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Counter name -> (queue, outcome -> number; None when it could not be counted).
    counters: dict[str, tuple[str, dict[str, int] | None]] = field(default_factory=dict)

    def as_text(self) -> str:
        titles = list(self.extra)
        header = ["queue", "customer jobs", "success", "avg duration", *titles]
        lines = [header]
        for queue, row in self.rows.items():
            lines.append(
                [
                    queue,
                    str(row["jobs"]),
                    _percent(row["success_rate"]),
                    _seconds(row["avg_duration_s"]),
                    *(self.extra[title].get(queue, "–") for title in titles),
                ]
            )
        period = f"{self.start:%Y-%m-%d} to {self.end - timedelta(days=1):%Y-%m-%d}"
        parts = [f"*Weekly job report*, {period} (UTC)", f"```\n{_table(lines)}\n```"]
        for name, (queue, counts) in self.counters.items():
            if counts is None:
                parts.append(f"{name.capitalize()} ({queue}): could not be counted")
            else:
                parts.append(
                    f"{name.capitalize()} ({queue}): " + ", ".join(f"{n} {what}" for what, n in counts.items())
                )
        system = [["system work", "jobs", "success", "avg duration"]]
        for origin, row in self.other_work.items():
            system.append(
                [
                    JobOrigin(origin).label,
                    str(row["jobs"]),
                    _percent(row["success_rate"]),
                    _seconds(row["avg_duration_s"]),
                ]
            )
        parts.append(f"```\n{_table(system)}\n```")
        return "\n".join(parts)


def _table(lines: list[list[str]]) -> str:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(line))
        for line in lines
    )


def _percent(rate: float | None) -> str:
    return "–" if rate is None else f"{rate * 100:.1f} %"


def _seconds(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f} s"


def last_full_week(now: datetime | None = None) -> tuple[datetime, datetime]:
    """Monday 00:00 UTC of last week, and of this week."""
    today = (now or timezone.now()).astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    this_monday = today - timedelta(days=today.weekday())
    return this_monday - timedelta(days=7), this_monday


def build_weekly_report(start: datetime, end: datetime) -> WeeklyReport:
    roll_up()  # the last hour's jobs count too
    report = WeeklyReport(
        start=start,
        end=end,
        rows=queue_summary(start, end),
        other_work=other_work_summary(start, end),
        counters=work_counts(start, end),
    )
    for column in _columns:
        try:
            value = column.value(start, end)
        except Exception:
            logger.exception("Report column %r of queue %s failed", column.title, column.queue)
            value = None
        report.extra.setdefault(column.title, {})[column.queue] = value if value is not None else "–"
    return report


def send_weekly_report(dry_run: bool = False, now: datetime | None = None) -> WeeklyReport:
    """Build last week's report and post it to Slack (unless ``dry_run``)."""
    start, end = last_full_week(now)
    report = build_weekly_report(start, end)
    if not dry_run:
        post_slack(report.as_text())
    return report


def run_weekly_report() -> dict[str, Any]:
    """The actor: Slack failures are retried like any job error (the notifier already tried a few times)."""
    report = send_weekly_report()
    return {"start": report.start.isoformat(), "end": report.end.isoformat(), "queues": len(report.rows)}


class WeeklyReportSerializer(serializers.Serializer):  # type: ignore[type-arg]
    pass


WEEKLY_REPORT = register_job_type(
    JobType(
        name=REPORT_JOB_TYPE,
        queue="maintenance",
        actor=REPORT_ACTOR,
        serializer=WeeklyReportSerializer,
        description="Post last week's per-queue job table (jobs, success rate, average duration) to Slack.",
        default_duration_s=5.0,
        staff_only=True,
        plan=lambda user, data: JobPlan(arguments={}),
        origin=JobOrigin.MAINTENANCE,
    )
)

run_weekly_report_actor = dramatiq.actor(actor_name=REPORT_ACTOR, queue_name="maintenance")(run_weekly_report)
