"""APScheduler triggers for schedules, all in UTC."""

from __future__ import annotations

from datetime import UTC, datetime

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from django.utils import timezone

from jobs.scheduling.models import Schedule


def build_trigger(schedule: Schedule) -> BaseTrigger:
    """The schedule's trigger; raises ValueError for a bad cron expression.

    An interval is anchored at the schedule's creation, so every scheduler
    process computes the same fire times whichever of them added the job.
    """
    if schedule.cron:
        return CronTrigger.from_crontab(schedule.cron, timezone=UTC)
    if not schedule.interval_seconds:
        raise ValueError("an interval schedule needs interval_seconds >= 1")
    anchor = schedule.created_at or timezone.now()
    return IntervalTrigger(seconds=schedule.interval_seconds, start_date=anchor, timezone=UTC)


def trigger_fingerprint(schedule: Schedule) -> str:
    """What the stored APScheduler job must match; a change reschedules it."""
    return f"{build_trigger(schedule)} grace={schedule.grace_seconds}"


def next_fire_time(schedule: Schedule, now: datetime | None = None) -> datetime | None:
    if schedule.paused:
        return None
    try:
        trigger = build_trigger(schedule)
    except ValueError:
        return None
    return trigger.get_next_fire_time(None, now or timezone.now())  # type: ignore[no-any-return]
