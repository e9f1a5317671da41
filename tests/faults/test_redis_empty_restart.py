"""Redis restarted without its data (no AOF) mid-run: nothing runs twice, nothing is lost.

Every message is gone and so is every heartbeat. Running jobs go on in their
workers, which must not be called dead before they have heartbeated again;
waiting and delayed jobs are sent again from the database; paused queues stay
paused. Executions are counted in PostgreSQL (attempts, and the attempt log's
``worker-lost`` entries), since the restart empties Redis.
"""

from __future__ import annotations

import shutil
import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from jobs.dispatch.services import build_job, create_jobs
from jobs.models import Job, JobAttempt, JobStatus
from jobs.ops.reconciler import reconcile_once
from jobs.worker.pausing import pause_queue, paused_queues, resume_queue
from tests.faults.helpers import statuses, worker_lost_attempts, worker_pids
from tests.faults.results import record
from tests.faults.test_postgres_restart import scheduler
from tests.jobs.helpers import start
from tests.services import PrivateRedis
from tests.workers import database_url, wait_for

pytestmark = [pytest.mark.fault, pytest.mark.slow]

#: The running jobs sleep in a subprocess: no progress write refreshes their rows meanwhile.
LONG_S = 12
PROCESSES, THREADS = 2, 2
WAITING = 10
#: How long the workers stay silent after the restart: two reconciler intervals, well within the
#: heartbeat timeout plus a consumer's reconnect delay (3 + 3 s in the test settings).
WORKERS_HELD_S = 2.5


def restart_empty(server: PrivateRedis) -> None:
    """Stop Redis, delete its append-only files, start it again: it comes back with no data."""
    server.stop()
    shutil.rmtree(server.dir)
    server.dir.mkdir()
    server.start()


def delayed_job(seconds: float) -> Job:
    """A job due in ``seconds``: within the delay horizon, so it goes to Redis as a delayed message."""
    with transaction.atomic():
        [job] = create_jobs(
            [
                build_job(
                    job_type="test-record-run",
                    queue="maintenance",
                    actor="test_record_run_maintenance",
                    arguments={"queue": "maintenance", "seconds": 0},
                    schedule_at=timezone.now() + timedelta(seconds=seconds),
                )
            ]
        )
    return job


def test_redis_restarted_empty_mid_run_runs_no_job_twice_and_sends_the_waiting_ones_again(
    pools, broker_on, private_redis
):
    # Given a pool whose every thread runs a long job, with more jobs waiting
    # in Redis behind them and one delayed job, and the scheduler reconciling
    # every second
    with scheduler(database_url(), env={"REDIS_URL": private_redis.url}, log_name="empty-restart") as log_path:
        pool = pools("maintenance", processes=PROCESSES, threads=THREADS, env={"REDIS_URL": private_redis.url})
        workers = worker_pids(pool)
        running = [
            str(start("test-sleep-subprocess", queue="maintenance", seconds=LONG_S).id)
            for _ in range(PROCESSES * THREADS)
        ]
        wait_for(
            lambda: (
                Job.objects.filter(id__in=running, status=JobStatus.ACTIVE, progress__gte=5).count() == len(running)
            ),
            timeout=30,
            interval=0.2,
            what="every thread to be running a long job",
        )
        waiting = [str(start("test-record-run", queue="maintenance", seconds=0.2).id) for _ in range(WAITING)]
        delayed = delayed_job(LONG_S)
        wait_for(
            lambda: broker_on.queue_depth("maintenance") >= WAITING,
            timeout=10,
            interval=0.1,
            what="the waiting jobs to wait in Redis",
        )
        assert str(delayed.id) in broker_on.message_ids_in_redis("maintenance")
        # ... and the running jobs' rows not refreshed for longer than the reconciler's grace
        wait_for(
            lambda: (
                Job.objects.filter(
                    id__in=running, updated_at__lt=timezone.now() - timedelta(seconds=settings.JOBS_RECONCILE_GRACE_S)
                ).count()
                == len(running)
            ),
            timeout=10,
            interval=0.1,
            what="the running jobs' rows to be older than the reconciler's grace",
        )

        # When Redis restarts without its data, and the workers take a while to
        # heartbeat again. In production they heartbeat every 5 s and the
        # reconciler passes every 10 s, so a pass often falls before their first
        # heartbeat; the test's 0.5 s heartbeats would mostly win that race, so
        # the workers are held still across the restart (their jobs' sleeps,
        # in their own sessions, go on) while the reconciler passes.
        processes = pool.worker_processes()
        for process in processes:
            process.suspend()
        try:
            restarted_at = time.monotonic()
            restart_empty(private_redis)
            time.sleep(WORKERS_HELD_S)  # the gap itself is the fault; nothing to poll for
        finally:
            for process in processes:
                process.resume()

        # Then every job completes
        every = [*running, *waiting, str(delayed.id)]
        seen: dict[str, int] = {}

        def all_completed() -> bool:
            seen.clear()
            seen.update(statuses(every))
            return seen == {JobStatus.COMPLETED: len(every)}

        try:
            wait_for(all_completed, timeout=60, interval=0.5, what="every job to complete")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; jobs by status: {seen}") from None
        recover_s = time.monotonic() - restarted_at

    # And each ran once: the running ones were left to their live workers, the others sent again
    attempts = dict(Job.objects.filter(id__in=every).values_list("id", "attempts"))
    ran_twice = sorted(str(job_id) for job_id, count in attempts.items() if count != 1)
    lost_workers = worker_lost_attempts(every)
    record(
        "Redis restarted empty",
        jobs=len(every),
        lost=len(every) - seen.get(JobStatus.COMPLETED, 0),
        ran_twice=len(set(ran_twice) | set(lost_workers)),
        recover_s=recover_s,
        bound="0",
    )
    assert lost_workers == [], f"jobs taken from a live worker: {lost_workers}"
    assert ran_twice == [], f"jobs run more than once: {ran_twice}"
    assert not JobAttempt.objects.filter(job_id__in=every).exists()
    sent_again = log_path.read_text(errors="replace").count("was not in Redis; sent it again")
    assert sent_again >= WAITING, f"the reconciler sent {sent_again} jobs again, expected {WAITING}"
    # The delayed job still waited for its time
    delayed.refresh_from_db()
    assert delayed.started_at is not None and delayed.scheduled_for is not None
    assert delayed.started_at >= delayed.scheduled_for - timedelta(seconds=0.5)
    # And the same worker processes did the work
    assert pool.proc is not None and pool.proc.poll() is None
    assert worker_pids(pool) == workers


def test_a_worker_without_heartbeat_is_called_dead_only_once_redis_data_is_a_heartbeat_timeout_old(
    broker_on, private_redis, transactional_db
):
    # Given a job running on a worker that has sent no heartbeat, its message gone
    [job] = create_jobs(
        [
            build_job(
                job_type="test-record-run",
                queue="maintenance",
                actor="test_record_run_maintenance",
                arguments={"queue": "maintenance", "seconds": 0},
            )
        ]
    )
    Job.objects.filter(id=job.id).update(
        status=JobStatus.ACTIVE, worker_id="gone", attempts=1, updated_at=timezone.now() - timedelta(minutes=5)
    )
    # When Redis loses its data and the reconciler passes at once
    restart_empty(private_redis)
    started = time.monotonic()
    first = reconcile_once()
    # Then it leaves the job alone: the worker may not have reconnected yet
    assert first.lost_requeued == 0
    assert Job.objects.get(id=job.id).status == JobStatus.ACTIVE
    # When the reconciler keeps passing
    wait_for(lambda: reconcile_once().lost_requeued == 1, timeout=30, interval=0.5, what="the job to be given back")
    # Then the job is given back once a heartbeat timeout has passed without a heartbeat
    assert time.monotonic() - started >= settings.DRAMATIQ_HEARTBEAT_TIMEOUT_MS / 1000
    assert worker_lost_attempts([str(job.id)]) == [str(job.id)]


def test_paused_queue_stays_paused_when_redis_restarts_empty(broker_on, private_redis, transactional_db):
    # Given one queue paused and another paused then resumed
    pause_queue("csv-export")
    pause_queue("thumbnails")
    resume_queue("thumbnails")
    # When Redis restarts without its data, and the reconciler passes
    restart_empty(private_redis)
    assert paused_queues() == set()
    reconcile_once()
    # Then the paused queue is paused again, and only it
    assert paused_queues() == {"csv-export"}
