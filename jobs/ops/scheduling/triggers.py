"""APScheduler triggers for schedules, all in UTC."""

from __future__ import annotations

from datetime import UTC, datetime

from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from django.utils import timezone

from jobs.models.schedule import Schedule

_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def _crontab_days(field: str) -> str:
    """A crontab day-of-week field in APScheduler's terms.

    In crontab 0 (and 7) is Sunday; APScheduler's ``from_crontab`` passes the
    numbers through to its own day-of-week field, where 0 is Monday, so
    ``0 6 * * 1`` would fire on Tuesdays. Numbers become day names here.
    """
    if field == "*" or not any(ch.isdigit() for ch in field):
        return field
    days: set[int] = set()
    for part in field.split(","):
        base, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if base == "*":
            first, last = 0, 6
        elif "-" in base:
            start, end = base.split("-", 1)
            first, last = _day_number(start), _day_number(end)
        else:
            first = _day_number(base)
            last = 6 if step_text else first
        if step < 1 or first > last and last != 0:
            raise ValueError(f"bad day-of-week field {field!r}")
        if last < first:  # "5-7": Friday to Sunday
            last += 7
        days.update(day % 7 for day in range(first, last + 1, step))
    return ",".join(_DAY_NAMES[day] for day in sorted(days))


def _day_number(text: str) -> int:
    text = text.strip().lower()
    if text in _DAY_NAMES:
        return _DAY_NAMES.index(text)
    if not text.isdigit() or int(text) > 7:
        raise ValueError(f"bad day of week {text!r}")
    return int(text) % 7


def build_trigger(schedule: Schedule) -> BaseTrigger:
    """The schedule's trigger; raises ValueError for a bad cron expression.

    An interval is anchored at the schedule's creation, so every scheduler
    process computes the same fire times whichever of them added the job.
    """
    if schedule.cron:
        fields = schedule.cron.split()
        if len(fields) != 5:
            raise ValueError(f"a cron expression has 5 fields, not {len(fields)}: {schedule.cron!r}")
        minute, hour, day, month, day_of_week = fields
        return CronTrigger(
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=_crontab_days(day_of_week),
            timezone=UTC,
        )
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
