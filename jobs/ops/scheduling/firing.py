"""Firing a schedule: claim the fire time with a unique row, then enqueue its job.

Every scheduler process may try to fire the same time; the ``ScheduleFire``
row's UNIQUE (schedule, fire_time) lets exactly one of them through. The
job is recorded in the same transaction and sent to Redis after commit.
"""

from __future__ import annotations

import logging
import os
import socket
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from jobs.core.exceptions import UnknownJobType
from jobs.core.origin import Origin
from jobs.dispatch.registry import get_job_type
from jobs.dispatch.services import start_job
from jobs.models import ACTIVE_STATUSES
from jobs.models.schedule import FireOutcome, Schedule, ScheduleFire
from jobs.ops.scheduling.triggers import build_trigger

logger = logging.getLogger(__name__)

#: Who recorded a fire: this process.
FIRED_BY = f"{socket.gethostname()}:{os.getpid()}"[:100]


def validate_payload(job_type: str, payload: Any) -> dict[str, Any]:
    """The payload validated by the job type's serializer; Django ValidationError otherwise."""
    try:
        kind = get_job_type(job_type, startable=True)
    except UnknownJobType:
        raise ValidationError({"job_type": [f"no job type named {job_type!r}"]}) from None
    serializer = kind.payload_serializer()(data=payload if isinstance(payload, dict) else {})
    if not isinstance(payload, dict) or not serializer.is_valid():
        errors = serializer.errors if isinstance(payload, dict) else {"payload": ["must be a JSON object"]}
        raise ValidationError({"payload": [f"{field}: {problems}" for field, problems in errors.items()]})
    return dict(serializer.validated_data)


def validate_schedule(schedule: Schedule) -> None:
    """Everything a schedule must satisfy before it is saved: fields, timing, payload (ValidationError)."""
    schedule.full_clean()
    try:
        build_trigger(schedule)
    except ValueError as exc:
        raise ValidationError({"cron": [str(exc)]}) from exc
    validate_payload(schedule.job_type, schedule.payload)


def previous_job_unfinished(schedule: Schedule) -> bool:
    return ScheduleFire.objects.filter(schedule=schedule, job__status__in=ACTIVE_STATUSES).exists()


def fire(schedule: Schedule, fire_time: datetime, *, fired_by: str = FIRED_BY) -> ScheduleFire | None:
    """Fire one time of a schedule; None when another scheduler already recorded it.

    A schedule whose previous job is still waiting or running records
    ``skipped`` and enqueues nothing (no pile-up).
    """
    try:
        with transaction.atomic():
            try:
                with transaction.atomic():
                    claim = ScheduleFire.objects.create(
                        schedule=schedule, fire_time=fire_time, outcome=FireOutcome.ENQUEUED, fired_by=fired_by
                    )
            except IntegrityError:
                return None
            if previous_job_unfinished(schedule):
                claim.outcome = FireOutcome.SKIPPED
                claim.save(update_fields=["outcome"])
                logger.info("Schedule %s at %s skipped: its previous job is unfinished", schedule, fire_time)
                return claim
            data = validate_payload(schedule.job_type, schedule.payload)
            result = start_job(get_job_type(schedule.job_type), None, data, origin=Origin.schedule(schedule.name))
            claim.job = result.job
            if not result.created:
                # The job type answered with work already running for the same thing.
                claim.outcome = FireOutcome.SKIPPED
            claim.save(update_fields=["job", "outcome"])
    except Exception as exc:
        logger.exception("Schedule %s could not enqueue its job for %s", schedule, fire_time)
        return _record(schedule, fire_time, FireOutcome.FAILED, fired_by, error=f"{type(exc).__name__}: {exc}")
    logger.info("Schedule %s fired for %s: job %s (%s)", schedule, fire_time, claim.job_id, claim.outcome)
    return claim


def fire_by_id(schedule_id: int, fire_time: datetime, *, fired_by: str = FIRED_BY) -> ScheduleFire | None:
    """The scheduler's fire: nothing for a schedule deleted or paused since the job store last synced."""
    schedule = Schedule.objects.filter(pk=schedule_id, paused=False).first()
    if schedule is None:
        return None
    return fire(schedule, fire_time, fired_by=fired_by)


def run_now(schedule: Schedule) -> ScheduleFire | None:
    """ "Run now" from the admin: a fire at the current time, recorded like any other."""
    return fire(schedule, timezone.now(), fired_by=f"run-now {FIRED_BY}"[:100])


def record_missed(schedule_id: int, fire_time: datetime, *, fired_by: str = FIRED_BY) -> ScheduleFire | None:
    """A fire time the scheduler noticed past its grace period: recorded, not run."""
    schedule = Schedule.objects.filter(pk=schedule_id).first()
    if schedule is None:
        return None
    return _record(schedule, fire_time, FireOutcome.MISSED, fired_by)


def _record(
    schedule: Schedule, fire_time: datetime, outcome: str, fired_by: str, *, error: str = ""
) -> ScheduleFire | None:
    try:
        with transaction.atomic():
            return ScheduleFire.objects.create(
                schedule=schedule, fire_time=fire_time, outcome=outcome, fired_by=fired_by, error=error[:4000]
            )
    except IntegrityError:
        return None
