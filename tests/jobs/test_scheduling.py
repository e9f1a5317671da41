"""Recurring jobs: each fire time enqueues one job, however many scheduler processes run.

The scheduler tests start real ``manage.py runscheduler`` processes against
the test database, with second-level intervals so that they finish quickly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta
from importlib import import_module

import pytest
from django.apps import apps as django_apps
from django.utils import timezone
from django_apscheduler.models import DjangoJob, DjangoJobExecution

from jobs.dispatch.canaries import WORKER_START_KEY_PREFIX
from jobs.models import Job, JobAttempt, JobStatus
from jobs.models.schedule import FireOutcome, Schedule, ScheduleFire
from jobs.ops.scheduling import cleanup_hooks, register_cleanup
from jobs.ops.scheduling.cleanup import prune_finished_jobs, prune_finished_jobs_in_batches, run_cleanup
from jobs.ops.scheduling.firing import fire, fire_by_id, run_now, validate_schedule
from jobs.ops.scheduling.triggers import build_trigger
from tests.workers import ROOT, database_url, wait_for

INTERVAL_S = 2


class SchedulerRun:
    """One ``runscheduler`` process re-reading schedules every second; with ``duties``, its
    reconciler, alerts and statistics run too (``env`` sets their timings)."""

    def __init__(self, label: str, *, duties: bool = False, env: dict[str, str] | None = None):
        self.log_path = ROOT / "var" / f"test-scheduler-{label}-{os.getpid()}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.launched_at = timezone.now()
        self.duties = duties
        self.env = env or {}

    def start(self) -> SchedulerRun:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "config.settings_test",
            "DATABASE_URL": database_url(),
            **self.env,
        }
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.write_bytes(b"")
        log = open(self.log_path, "ab")  # noqa: SIM115 - closed with the process
        self.launched_at = timezone.now()
        duties = [] if self.duties else ["--no-default-duties"]
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "runscheduler", *duties, "--refresh-seconds", "1"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        wait_for(lambda: "Scheduler running" in self.log(), 30, 0.1, "the scheduler to start")
        return self

    def stop(self, timeout: float = 10) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise

    def kill(self) -> None:
        """kill -9: no goodbye, as when a host is lost."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


@pytest.fixture
def schedulers(clean_redis, transactional_db):
    """Start scheduler processes on a schedule table emptied of the default rows."""
    Schedule.objects.all().delete()
    DjangoJob.objects.all().delete()
    started: list[SchedulerRun] = []

    def start(label: str, **kwargs) -> SchedulerRun:
        run = SchedulerRun(label, **kwargs).start()
        started.append(run)
        return run

    yield start
    for run in started:
        if run.proc is not None and run.proc.poll() is None:
            run.stop()


def _canary_schedule(name: str = "test canary", **fields) -> Schedule:
    defaults = {"interval_seconds": INTERVAL_S, "job_type": "canary", "payload": {"queue": "maintenance"}}
    return Schedule.objects.create(name=name, **{**defaults, **fields})


def _fires(schedule: Schedule) -> list[ScheduleFire]:
    return list(ScheduleFire.objects.filter(schedule=schedule).order_by("fire_time"))


def _fire_times_between(schedule: Schedule, after, until) -> list:
    trigger = build_trigger(schedule)
    times, previous = [], None
    current = trigger.get_next_fire_time(None, after + timedelta(microseconds=1))
    while current is not None and current <= until:
        times.append(current)
        previous = current
        current = trigger.get_next_fire_time(previous, previous + timedelta(microseconds=1))
    return times


@pytest.mark.slow
def test_two_schedulers_enqueue_each_fire_time_exactly_once(schedulers, pools):
    # Given a worker that finishes each canary, and a schedule firing every 2 seconds
    pools("maintenance")
    schedule = _canary_schedule()
    # When two scheduler processes run against the same database for several fire times
    first, second = schedulers("a"), schedulers("b")
    wait_for(lambda: len(_fires(schedule)) >= 4, 30, 0.2, "four fire times")
    assert first.stop() == 0
    assert second.stop() == 0
    # Then each fire time has one fire and one job, with no fire time left out
    fires = _fires(schedule)
    times = [fire.fire_time for fire in fires]
    assert len(times) == len(set(times))
    assert times == _fire_times_between(schedule, times[0] - timedelta(microseconds=1), times[-1])
    assert all(fire.outcome == FireOutcome.ENQUEUED for fire in fires)
    # (the worker's own start-up canary is not a fire)
    jobs = Job.objects.filter(type="canary").exclude(idempotency_key__startswith=WORKER_START_KEY_PREFIX)
    assert jobs.count() == len(fires)
    assert {fire.job_id for fire in fires} == set(jobs.values_list("id", flat=True))
    # And django-apscheduler logged the executions
    assert DjangoJobExecution.objects.filter(job_id=schedule.apscheduler_id).exists()


@pytest.mark.slow
def test_scheduler_started_after_missed_fire_times_runs_the_latest_once(schedulers, pools):
    # Given a schedule that fired once, then every scheduler went down
    pools("maintenance")
    schedule = _canary_schedule(grace_seconds=60)
    first = schedulers("a")
    wait_for(lambda: _fires(schedule), 20, 0.1, "the first fire")
    assert first.stop() == 0
    last_fired = _fires(schedule)[-1].fire_time
    # When two fire times pass with no scheduler running, and one comes back
    wait_for(lambda: timezone.now() > last_fired + timedelta(seconds=2 * INTERVAL_S + 0.5), 10, 0.1, "missed times")
    back = schedulers("b")
    wait_for(lambda: [f for f in _fires(schedule) if f.fire_time > last_fired], 20, 0.1, "the catch-up fire")
    back.stop()
    # Then all the times it missed produced one fire, at the latest of them, with its job
    caught_up = next(f for f in _fires(schedule) if f.fire_time > last_fired)
    skipped_over = _fire_times_between(schedule, last_fired, caught_up.fire_time)[:-1]
    assert len(skipped_over) >= 1
    assert not ScheduleFire.objects.filter(schedule=schedule, fire_time__in=skipped_over).exists()
    assert caught_up.created_at > caught_up.fire_time
    assert _fire_times_between(schedule, caught_up.fire_time, caught_up.created_at) == []
    assert caught_up.outcome == FireOutcome.ENQUEUED
    assert caught_up.job is not None


@pytest.mark.slow
def test_fire_is_skipped_while_the_previous_job_is_unfinished(schedulers):
    # Given a schedule whose jobs nobody runs (no worker for their queue)
    schedule = _canary_schedule()
    schedulers("a")
    # When it fires twice
    wait_for(lambda: len(_fires(schedule)) >= 2, 20, 0.1, "two fire times")
    first, second = _fires(schedule)[:2]
    # Then the second fire is recorded as skipped and enqueued nothing
    assert first.outcome == FireOutcome.ENQUEUED
    assert first.job.status == JobStatus.QUEUED
    assert second.outcome == FireOutcome.SKIPPED
    assert second.job is None
    assert Job.objects.filter(type="canary").count() == 1


@pytest.mark.slow
def test_paused_schedule_stops_firing(schedulers):
    schedule = _canary_schedule()
    schedulers("a")
    wait_for(lambda: _fires(schedule), 20, 0.1, "the first fire")
    # When staff pause it
    Schedule.objects.filter(pk=schedule.pk).update(paused=True)
    wait_for(lambda: not DjangoJob.objects.filter(id=schedule.apscheduler_id).exists(), 10, 0.1, "unscheduling")
    paused_at = timezone.now()
    count = len(_fires(schedule))
    # Then no fire happens over the next two fire times
    wait_for(lambda: timezone.now() > paused_at + timedelta(seconds=2 * INTERVAL_S + 0.5), 10, 0.1, "two intervals")
    assert len(_fires(schedule)) == count
    assert not ScheduleFire.objects.filter(schedule=schedule, fire_time__gt=paused_at).exists()


def test_run_now_enqueues_one_job_recorded_as_a_fire(db):
    schedule = _canary_schedule(cron="0 8 * * *", interval_seconds=None)
    fired = run_now(schedule)
    assert fired is not None and fired.outcome == FireOutcome.ENQUEUED
    assert Job.objects.filter(type="canary").count() == 1
    assert fired.job.arguments["queue"] == "maintenance"
    assert fired.job.owner is None


def test_second_claim_of_a_fire_time_enqueues_nothing(db):
    schedule = _canary_schedule()
    when = timezone.now().replace(microsecond=0)
    assert fire(schedule, when) is not None
    assert fire(schedule, when) is None
    assert Job.objects.count() == 1
    assert ScheduleFire.objects.filter(schedule=schedule).count() == 1


def test_paused_schedule_is_not_fired_by_the_scheduler(db):
    schedule = _canary_schedule(paused=True)
    assert fire_by_id(schedule.pk, timezone.now()) is None
    assert not ScheduleFire.objects.exists()


def test_fire_with_an_invalid_payload_is_recorded_as_failed(db):
    schedule = _canary_schedule(payload={"queue": "no-such-queue"})
    fired = fire(schedule, timezone.now())
    assert fired is not None and fired.outcome == FireOutcome.FAILED
    assert "queue" in fired.error
    assert not Job.objects.exists()


#: The data migrations that make the default schedules: the platform's, then each app's own.
DEFAULT_SCHEDULE_MIGRATIONS = [
    ("jobs.migrations.0003_default_schedules", "create_defaults"),
    ("jobs.migrations.0006_weekly_report_schedule", "create_schedule"),
    ("campaigns.migrations.0004_daily_digest_schedule", "create_schedule"),
    ("exports.migrations.0002_weekly_analytics_schedule", "create_schedule"),
    ("exports.migrations.0004_export_expiry_schedule", "create_schedule"),
    ("documents.migrations.0002_thumbnail_maintenance_schedule", "create_schedule"),
]


def test_default_schedules_exist_in_utc(db):
    # The data migrations' rows (flushed by earlier transactional tests, so created again here)
    Schedule.objects.all().delete()
    for module, function in DEFAULT_SCHEDULE_MIGRATIONS:
        getattr(import_module(module), function)(django_apps, None)
    timings = dict(Schedule.objects.values_list("name", "cron"))
    assert timings["daily digest"] == "0 8 * * *"
    assert timings["weekly analytics"] == "0 6 * * 1"
    assert timings["monthly cleanup"] == "0 0 1 * *"
    assert timings["thumbnail maintenance"] == "0 2 * * *"
    assert timings["export expiry"] == "30 0 * * *"
    assert timings["weekly report"] == "0 7 * * mon"
    assert sum(1 for name in timings if name.startswith("canary ")) == 5
    for schedule in Schedule.objects.all():
        validate_schedule(schedule)


@pytest.mark.parametrize(
    ("cron", "expected_weekdays"),
    [
        ("0 6 * * 1", {0}),  # crontab 1 = Monday (APScheduler's own numbering would say Tuesday)
        ("0 6 * * 0", {6}),
        ("0 6 * * 7", {6}),
        ("0 6 * * 1-5", {0, 1, 2, 3, 4}),
        ("0 6 * * 5-7", {4, 5, 6}),
        ("0 6 * * */2", {6, 1, 3, 5}),
        ("0 6 * * mon,wed", {0, 2}),
    ],
)
def test_cron_weekdays_follow_crontab(cron, expected_weekdays):
    trigger = build_trigger(Schedule(cron=cron))
    fire_time = timezone.now()
    weekdays = set()
    for _ in range(14):
        fire_time = trigger.get_next_fire_time(None, fire_time + timedelta(seconds=1))
        weekdays.add(fire_time.weekday())
    assert weekdays == expected_weekdays


def _finished_job(days_ago: int, status: str = JobStatus.COMPLETED) -> Job:
    finished = timezone.now() - timedelta(days=days_ago)
    return Job.objects.create(
        type="canary", queue="maintenance", actor="canary_maintenance", status=status, finished_at=finished
    )


def test_cleanup_prunes_finished_jobs_past_retention_in_batches(db, settings):
    settings.JOBS_RETENTION_DAYS = 30
    old = [_finished_job(40), _finished_job(31, JobStatus.FAILED), _finished_job(60, JobStatus.CANCELLED)]
    recent = _finished_job(5)
    waiting = Job.objects.create(type="canary", queue="maintenance", actor="canary_maintenance")
    assert prune_finished_jobs(batch_size=2) == len(old)
    assert set(Job.objects.values_list("id", flat=True)) == {recent.id, waiting.id}


def test_cleanup_deletes_in_batches_of_the_setting_with_children_and_attempts_and_keeps_recent_jobs(db, settings):
    # Given five old finished jobs (one a parent with two children, one with an attempt row), and newer ones
    settings.JOBS_RETENTION_DAYS = 30
    settings.JOBS_CLEANUP_BATCH = 2
    old = [_finished_job(40 + days) for days in range(4)] + [_finished_job(35, JobStatus.FAILED)]
    children = [
        Job.objects.create(type="canary", queue="maintenance", actor="canary_maintenance", parent=old[0], status=status)
        for status in (JobStatus.COMPLETED, JobStatus.FAILED)
    ]
    JobAttempt.objects.create(job=old[4], number=1, outcome=JobAttempt.Outcome.FAILED, error="boom")
    recent = _finished_job(5)
    old_but_running = Job.objects.create(
        type="canary",
        queue="maintenance",
        actor="canary_maintenance",
        status=JobStatus.ACTIVE,
        created_at=timezone.now() - timedelta(days=60),
    )
    # When the cleanup prunes them
    report = prune_finished_jobs_in_batches()
    # Then in batches of two, each its own delete, the children and attempts going with their jobs
    assert (report.deleted, report.batches, report.batch_sizes) == (5, 3, [2, 2, 1])
    assert report.longest_batch_s > 0
    assert not Job.objects.filter(id__in=[job.id for job in old + children]).exists()
    assert not JobAttempt.objects.exists()
    assert set(Job.objects.values_list("id", flat=True)) == {recent.id, old_but_running.id}


def test_cleanup_batches_that_end_inside_a_run_of_equal_finish_times_miss_none(db, settings):
    # Given five old jobs that finished at the same instant (a fan-out's children finish together)
    settings.JOBS_RETENTION_DAYS = 30
    finished = timezone.now() - timedelta(days=40)
    for _ in range(5):
        Job.objects.create(
            type="canary",
            queue="maintenance",
            actor="canary_maintenance",
            status=JobStatus.COMPLETED,
            finished_at=finished,
        )
    # When batches of two walk them
    report = prune_finished_jobs_in_batches(batch_size=2)
    # Then every one is deleted, none twice
    assert (report.deleted, report.batch_sizes) == (5, [2, 2, 1])
    assert not Job.objects.exists()


def test_cleanup_runs_every_registered_hook(db):
    calls = []
    register_cleanup("test-hook", lambda: calls.append("ran") or 3)
    try:
        result = run_cleanup()
    finally:
        from jobs.ops import scheduling

        scheduling._cleanup_hooks.pop("test-hook")
    assert calls == ["ran"]
    assert result["test-hook"] == 3
    assert "expired-exports" in cleanup_hooks()


def test_thumbnail_maintenance_starts_a_thumbnails_job_for_documents_missing_a_size(db, settings, tmp_path):
    from documents.maintenance import regenerate_missing_thumbnails
    from documents.models import Document, DocumentStatus
    from tests.factories import DocumentFactory

    # Given one ready document with every thumbnail size, one missing a size, and one not ready with none
    settings.MEDIA_ROOT = str(tmp_path)
    settings.THUMBNAIL_SIZES = [150, 300]
    settings.THUMBNAIL_MAINTENANCE_MIN_AGE_S = 0
    complete = DocumentFactory(status=DocumentStatus.READY)
    partial = DocumentFactory(status=DocumentStatus.READY)
    processing = DocumentFactory(status=DocumentStatus.PROCESSING)
    for document, sizes in ((complete, [150, 300]), (partial, [150])):
        # Presence is read from the row (Document.thumbnails), never asked of the storage.
        Document.record_thumbnails(
            str(document.id), {size: f"thumbnails/{document.id.hex}/{size}.png" for size in sizes}
        )
    # When the maintenance runs
    result = regenerate_missing_thumbnails()
    # Then one thumbnails job renders the two documents that miss a size, whatever their status
    assert result["documents"] == 2
    job = Job.objects.get(type="thumbnails")
    assert sorted(job.arguments["document_ids"]) == sorted([str(partial.id), str(processing.id)])
    assert job.queue == "thumbnails"


def test_admin_lists_schedules_and_runs_one_now(db, client):
    from tests.factories import UserFactory

    # Given staff in the admin and a schedule that fired once
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    schedule = _canary_schedule(cron="0 8 * * *", interval_seconds=None)
    # When they use "run now" on it
    response = client.post(
        "/admin/jobs/schedule/",
        {"action": "run_schedules_now", "_selected_action": [schedule.pk]},
        follow=True,
    )
    # Then one job is enqueued and recorded as a fire, shown with its status and the next run
    assert response.status_code == 200
    fired = ScheduleFire.objects.get(schedule=schedule)
    assert fired.job is not None and fired.outcome == FireOutcome.ENQUEUED
    page = client.get("/admin/jobs/schedule/").content.decode()
    assert "Queued" in page and "08:00:00" in page
    assert client.get("/admin/jobs/schedulefire/").status_code == 200
    assert client.get(f"/admin/jobs/schedule/{schedule.pk}/change/").status_code == 200


def test_admin_pause_action_pauses_a_schedule(db, client):
    from tests.factories import UserFactory

    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    schedule = _canary_schedule()
    client.post("/admin/jobs/schedule/", {"action": "pause_schedules", "_selected_action": [schedule.pk]})
    schedule.refresh_from_db()
    assert schedule.paused


@pytest.mark.slow
def test_cleanup_job_runs_on_the_maintenance_queue(pools, settings):
    from tests.jobs.helpers import start, wait_status

    # Given an old finished job and a maintenance worker
    old = _finished_job(400)
    pools("maintenance")
    # When the cleanup job runs
    job = wait_status(start("cleanup", None), JobStatus.COMPLETED, JobStatus.FAILED)
    # Then it pruned the old job and ran the exports hook
    assert job.status == JobStatus.COMPLETED, job.error_message
    assert job.result["jobs_pruned"] == 1
    assert "expired-exports" in job.result
    assert not Job.objects.filter(id=old.id).exists()


def test_fire_time_past_its_grace_is_recorded_as_missed(transactional_db):
    from apscheduler.events import EVENT_JOB_MISSED, JobExecutionEvent

    from jobs.ops.scheduling.runner import _on_missed

    # Given a schedule whose fire time APScheduler found past the grace period
    schedule = _canary_schedule()
    when = timezone.now() - timedelta(hours=2)
    # When the scheduler reports the miss
    _on_missed(JobExecutionEvent(EVENT_JOB_MISSED, schedule.apscheduler_id, "default", when))
    # Then it is recorded as missed, and nothing was enqueued
    fired = ScheduleFire.objects.get(schedule=schedule)
    assert (fired.fire_time, fired.outcome, fired.job) == (when, FireOutcome.MISSED, None)
    assert not Job.objects.exists()
