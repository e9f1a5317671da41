"""Stops running jobs that must stop: over their time limit, cancelled, taken over, or shutting down.

Dramatiq's TimeLimit raises an exception in the worker thread, which cannot
interrupt a thread blocked in a subprocess wait or in C code. The watchdog
first kills the job's child processes (each leads its own process group),
which unblocks the thread, and then raises the exception in it. Work that
must be stoppable therefore runs in a child process (``jobs.worker.isolation``).
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

import dramatiq
from django.conf import settings
from django.db import close_old_connections
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware
from dramatiq.middleware.shutdown import Shutdown
from dramatiq.threading import raise_thread_exception

from jobs.core.context import RunningJob, current_job, drop_queued_stop
from jobs.core.context import registry_lock as _registry_lock
from jobs.core.enums import StopReason
from jobs.core.exceptions import JobCancelled, JobTimedOut, RunSuperseded
from jobs.models import Job, JobStatus
from jobs.worker.isolation import start_child_server
from jobs.worker.progress import flush_pending
from jobs.worker.stopping import stop_exception

logger = logging.getLogger(__name__)

_running: dict[str, RunningJob] = {}


def kill_children(job: RunningJob) -> None:
    for pid in list(job.children):
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


class JobWatchdog(Middleware):
    """One thread per worker process that enforces time limits, cancels and shutdown grace."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._shutdown_at: float | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._thread = threading.Thread(target=self._watch, name="conveyor-watchdog", daemon=True)
        self._thread.start()
        start_child_server(worker.consumer_whitelist or None)

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        # Running jobs get a grace period to finish; then they are
        # interrupted and requeued (the mirror handles Shutdown).
        self._shutdown_at = time.monotonic() + settings.WORKER_SHUTDOWN_GRACE_S

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self._stopping.set()

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        job = current_job()
        if job is not None:
            with _registry_lock:
                _running[job.job_id] = job

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: object = None,
        exception: object = None,
    ) -> None:
        with _registry_lock:
            job = _running.pop(message.message_id, None)
            if job is not None and job.stop_reason:
                # From here the watchdog cannot stop this run; a stop it queued just before must not land
                # later. (It queues one only with the reason, under this lock: most runs skip the call.)
                drop_queued_stop()
        if job is not None:
            kill_children(job)

    after_skip_message = after_process_message

    # -- the watching thread -------------------------------------------------
    def _watch(self) -> None:
        interval = settings.JOBS_WATCHDOG_INTERVAL_S
        last_cancel_check = 0.0
        while not self._stopping.wait(interval):
            try:
                now = time.monotonic()
                with _registry_lock:
                    running = list(_running.values())
                if not running:
                    continue
                for job in running:
                    if job.deadline is not None and now >= job.deadline:
                        self._stop(job, JobTimedOut, StopReason.timed_out(job.time_limit_s))
                if self._shutdown_at is not None and now >= self._shutdown_at:
                    for job in running:
                        self._stop(job, Shutdown, StopReason.SHUTTING_DOWN)
                if now - last_cancel_check >= interval:
                    last_cancel_check = now
                    self._stop_cancelled(running)
                self._flush_progress(running)
            except Exception:
                logger.exception("Watchdog check failed; trying again")

    def _flush_progress(self, running: list[RunningJob]) -> None:
        """Write progress a job kept back (it may now be blocked in a long step)."""

        for job in running:
            if job.pending_progress is not None and not job.stop_reason:
                stop = flush_pending(job)
                if stop:
                    self._stop(job, type(stop_exception(stop)), stop)

    def _stop_cancelled(self, running: list[RunningJob]) -> None:
        """Stop runs asked to cancel, and runs whose job another worker took over.

        A stale run (its worker was frozen, or cut off from Redis past the
        heartbeat timeout) is stopped here even if it never reports progress:
        its children are killed and it writes nothing more.
        """
        ids = [job.job_id for job in running if not job.stop_reason]
        if not ids:
            return
        close_old_connections()
        rows = {
            str(row["id"]): row
            for row in Job.objects.filter(id__in=ids).values(
                "id", "status", "attempts", "worker_id", "cancel_requested_at"
            )
        }
        for job in running:
            row = rows.get(job.job_id)
            if row is None or job.stop_reason:
                continue
            holds = not job.attempt or (
                row["status"] == JobStatus.ACTIVE
                and row["attempts"] == job.attempt
                and row["worker_id"] == job.worker_id
            )
            if not holds:
                self._stop(job, RunSuperseded, StopReason.SUPERSEDED)
            elif row["cancel_requested_at"] is not None:
                self._stop(job, JobCancelled, StopReason.CANCELLED_WHILE_RUNNING)

    @staticmethod
    def _stop(job: RunningJob, exc_type: type[BaseException], reason: str) -> None:
        # All under the lock: the job thread drops a queued stop under it too (raise_stop, and
        # when the run ends), so the exception never lands after the run is over.
        with _registry_lock:
            if _running.get(job.job_id) is not job or job.stop_reason:
                return
            job.stop_reason = reason
            kill_children(job)
            if job.critical:
                # Inside uninterrupted(): the block raises the stop when it ends.
                logger.warning("Stopping job %s (%s) after its current step: %s", job.job_id, job.job_type, reason)
                return
            raise_thread_exception(job.thread_id, exc_type)
        logger.warning("Stopping job %s (%s): %s", job.job_id, job.job_type, reason)
