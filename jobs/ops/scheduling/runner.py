"""The scheduler process: APScheduler with django-apscheduler's job store, one per process.

django-apscheduler computes the fire times (cron or interval, UTC), keeps
them across restarts in ``DjangoJob`` and logs executions in
``DjangoJobExecution``. Several processes share that store, which APScheduler
does not make safe on its own: which process enqueues a fire time is decided
by ``jobs.ops.scheduling.firing.fire`` (a unique row), never by the store.

A stored job keeps its ``next_run_time`` while every scheduler is down, so
the first one back sees the missed time and, with ``coalesce``, runs it once
if within the schedule's grace (else records it ``missed``).

Fire times follow Redis's clock, not this host's (``use_shared_clock``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any

import apscheduler.executors.base
import apscheduler.schedulers.base
import dramatiq
from apscheduler.events import EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.executors.base import run_job
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.job import Job as APJob
from apscheduler.jobstores.base import ConflictingIdError, JobLookupError
from apscheduler.schedulers.base import STATE_RUNNING
from apscheduler.schedulers.blocking import BlockingScheduler
from django.db import close_old_connections
from django_apscheduler.jobstores import DjangoJobStore

from jobs.models.schedule import Schedule
from jobs.ops.scheduling.firing import fire_by_id, record_missed
from jobs.ops.scheduling.presence import SchedulerPresence
from jobs.ops.scheduling.triggers import build_trigger, trigger_fingerprint

logger = logging.getLogger(__name__)

JOB_ID_PREFIX = "schedule-"
_current = threading.local()


def _redis_clock_offset_s() -> float:
    clock = getattr(dramatiq.get_broker(), "clock", None)
    if clock is None:
        return 0.0
    try:
        return float(clock.offset_s())
    except Exception as exc:
        logger.warning("Could not read Redis's clock; fire times follow this host's for now: %s", exc)
        return 0.0


class _SharedClockDatetime(datetime):
    """``datetime`` whose ``now()`` is Redis's time: this host's clock plus the measured offset."""

    @classmethod
    def now(cls, tz: tzinfo | None = None) -> datetime:  # type: ignore[override]
        return datetime.now(tz) + timedelta(seconds=_redis_clock_offset_s())


def use_shared_clock() -> None:
    """Make APScheduler's notion of now Redis's time, so fire times follow one clock.

    Every scheduler process computes the same fire times, but each fires
    them when its own clock reads them: one whose clock runs five minutes
    ahead would enqueue every recurring job five minutes early (and, as a
    fire time is claimed once, the on-time schedulers would then skip it).
    APScheduler 3 reads the time only through ``datetime.now`` in these two
    modules (when a job is due, how long to sleep, whether a run missed its
    grace) and has no hook for it, so they get a ``datetime`` whose ``now``
    adds the offset. Idempotent; the offset is re-measured by the broker's clock.
    """
    apscheduler.schedulers.base.datetime = _SharedClockDatetime  # type: ignore[misc]
    apscheduler.executors.base.datetime = _SharedClockDatetime  # type: ignore[misc]


def fire_scheduled(schedule_id: int) -> str:
    """APScheduler's job function: claim and enqueue the fire time being run."""
    fire_time: datetime | None = getattr(_current, "fire_time", None)
    if fire_time is None:
        raise RuntimeError("fire_scheduled runs only under the scheduler's FireTimeExecutor")
    close_old_connections()
    try:
        fired = fire_by_id(schedule_id, fire_time)
    finally:
        close_old_connections()
    if fired is None:
        logger.info("Fire time %s of schedule %s: already recorded by another scheduler", fire_time, schedule_id)
        return "fired by another scheduler"
    return fired.outcome


def _run_with_fire_time(job: APJob, jobstore_alias: str, run_times: list[datetime], logger_name: str) -> list[Any]:
    events: list[Any] = []
    for run_time in run_times:
        _current.fire_time = run_time
        try:
            events.extend(run_job(job, jobstore_alias, [run_time], logger_name))
        finally:
            _current.fire_time = None
    return events


class FireTimeExecutor(ThreadPoolExecutor):
    """APScheduler's thread pool, telling the job function which fire time it runs for."""

    def _do_submit_job(self, job: APJob, run_times: list[datetime]) -> None:
        def callback(future: Any) -> None:
            exc = future.exception()
            if exc:
                self._run_job_error(job.id, exc, getattr(exc, "__traceback__", None))
            else:
                self._run_job_success(job.id, future.result())

        future = self._pool.submit(_run_with_fire_time, job, job._jobstore_alias, run_times, self._logger.name)
        future.add_done_callback(callback)


class SharedDjangoJobStore(DjangoJobStore):
    """The Django job store, tolerant of another scheduler removing a job it was running."""

    def update_job(self, job: APJob) -> None:
        try:
            super().update_job(job)
        except JobLookupError:
            logger.info("Scheduled job %s was removed by another scheduler meanwhile", job.id)


def _schedule_id(job_id: str) -> int | None:
    if not job_id.startswith(JOB_ID_PREFIX):
        return None
    try:
        return int(job_id[len(JOB_ID_PREFIX) :])
    except ValueError:
        return None


def _on_missed(event: JobExecutionEvent) -> None:
    schedule_id = _schedule_id(event.job_id)
    if schedule_id is None:
        return
    close_old_connections()
    try:
        record_missed(schedule_id, event.scheduled_run_time)
        logger.warning("Schedule %s missed its fire time %s (past its grace)", schedule_id, event.scheduled_run_time)
    except Exception:
        logger.exception("Could not record the missed fire of schedule %s", schedule_id)


def _job_name(schedule: Schedule) -> str:
    return f"{schedule.name} | {trigger_fingerprint(schedule)}"[:255]


def sync_schedules(scheduler: BlockingScheduler) -> None:
    """Make the job store hold one job per unpaused schedule, as the Schedule table says.

    An unchanged job is left alone (its stored next run time is what lets a
    missed fire run); a changed cron, interval or grace reschedules it.
    """
    schedules = {schedule.apscheduler_id: schedule for schedule in Schedule.objects.all()}
    stored = {job.id: job for job in scheduler.get_jobs(jobstore="default")}
    for job_id, schedule in schedules.items():
        job = stored.get(job_id)
        if schedule.paused:
            if job is not None:
                _remove(scheduler, job_id)
            continue
        try:
            trigger = build_trigger(schedule)
            name = _job_name(schedule)
        except ValueError:
            logger.exception("Schedule %s has an invalid timing; not scheduled", schedule)
            continue
        if job is None:
            try:
                scheduler.add_job(
                    fire_scheduled,
                    trigger=trigger,
                    args=[schedule.pk],
                    id=job_id,
                    name=name,
                    jobstore="default",
                    misfire_grace_time=schedule.grace_seconds,
                    coalesce=True,
                    max_instances=1,
                )
                logger.info("Scheduled %s (%s)", schedule, schedule.timing)
            except ConflictingIdError:
                pass  # another scheduler process added it a moment ago
        elif job.name != name:
            try:
                scheduler.modify_job(job_id, jobstore="default", name=name, misfire_grace_time=schedule.grace_seconds)
                scheduler.reschedule_job(job_id, jobstore="default", trigger=trigger)
                logger.info("Rescheduled %s (%s)", schedule, schedule.timing)
            except JobLookupError:
                pass
    for job_id in stored:
        if _schedule_id(job_id) is not None and job_id not in schedules:
            _remove(scheduler, job_id)


def _remove(scheduler: BlockingScheduler, job_id: str) -> None:
    try:
        scheduler.remove_job(job_id, jobstore="default")
    except JobLookupError:
        pass


class Duty:
    """A periodic in-process task of the scheduler (not a queued job)."""

    def __init__(self, name: str, interval_s: float, run: Callable[[], object]):
        self.name = name
        self.interval_s = interval_s
        self.run = run
        self.next_at = 0.0


class SchedulerProcess:
    """One scheduler process: a BlockingScheduler in the calling thread, duties in another."""

    def __init__(self, *, refresh_s: float, duties: list[Duty], max_workers: int = 2):
        self.stop_event = threading.Event()
        self._exited = threading.Event()
        self.refresh_s = refresh_s
        self.duties = [Duty("sync-schedules", refresh_s, self._sync), *duties]
        use_shared_clock()
        self.scheduler = BlockingScheduler(
            timezone=UTC,
            jobstores={"default": SharedDjangoJobStore()},
            executors={"default": FireTimeExecutor(max_workers=max_workers)},
            job_defaults={"coalesce": True, "max_instances": 1},
        )
        self.scheduler.add_listener(_on_missed, EVENT_JOB_MISSED)
        self.presence = SchedulerPresence()

    def _sync(self) -> None:
        sync_schedules(self.scheduler)
        # Another process may have added or changed a job in the shared store: look again.
        self.scheduler.wakeup()

    def stop(self) -> None:
        """Safe from a signal handler: the duties thread does the shutdown."""
        self.stop_event.set()

    def _run_duties(self) -> None:
        while self.scheduler.state != STATE_RUNNING and not self._exited.is_set():
            self._exited.wait(0.05)
        while not self.stop_event.is_set() and not self._exited.is_set():
            for duty in self.duties:
                now = time.monotonic()
                if now < duty.next_at:
                    continue
                duty.next_at = now + duty.interval_s
                try:
                    close_old_connections()
                    duty.run()
                except Exception:
                    logger.exception("Scheduler duty %s failed; next try in %ss", duty.name, duty.interval_s)
            self.stop_event.wait(0.2)
        close_old_connections()
        if self.scheduler.state == STATE_RUNNING:
            self.scheduler.shutdown(wait=True)

    def run(self) -> None:
        """Block until ``stop()``; the process beats in Redis meanwhile and says goodbye at the end."""
        self.presence.start()
        thread = threading.Thread(target=self._run_duties, name="scheduler-duties", daemon=True)
        thread.start()
        try:
            self.scheduler.start()
        finally:
            self._exited.set()
            thread.join(timeout=10)
            # Only a stop that was asked for is a goodbye: a crash leaves the entry to go stale (and alert).
            self.presence.stop(goodbye=self.stop_event.is_set())
