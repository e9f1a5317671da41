"""The watchdog's stop and the job thread's own stop never both land.

The watchdog stops a run by raising an exception in its thread; a progress
call that sees the stop first raises it itself. If the watchdog's exception
were still queued then, it would land after the run ended, inside Dramatiq's
own handling, and kill the worker thread with the job left ``active``.

Real threads and the real watchdog, progress and after-hook code; no broker
(the race is between two threads of one process). Many rounds, with a tiny
switch interval so that the threads interleave at every point.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from jobs.core.context import RunningJob, set_current_job
from jobs.core.enums import StopReason
from jobs.core.exceptions import JobCancelled
from jobs.worker.middleware import watchdog
from jobs.worker.middleware.watchdog import JobWatchdog
from jobs.worker.progress import progress
from jobs.worker.stopping import stop_exception

ROUNDS = 300


@pytest.fixture
def busy_switching() -> Iterator[None]:
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    yield
    sys.setswitchinterval(previous)


def _one_round(number: int) -> dict[str, Any]:
    job = RunningJob(job_id=f"race-{number}", job_type="canary", queue="maintenance", thread_id=0, time_limit_s=None)
    # Progress is never due for a write: the round needs no database.
    job.last_progress_write = time.monotonic() + 3600
    outcome: dict[str, Any] = {}
    registered = threading.Event()

    def run() -> None:
        job.thread_id = threading.get_ident()
        set_current_job(job)
        try:
            try:
                with watchdog._registry_lock:
                    watchdog._running[job.job_id] = job
                registered.set()
                while True:
                    progress(50)
            except JobCancelled as stopped:
                outcome["stopped"] = str(stopped)
            # The run is over: Dramatiq logs the outcome and calls the after-hooks, the watchdog's among them.
            JobWatchdog().after_process_message(None, SimpleNamespace(message_id=job.job_id))  # type: ignore[arg-type]
            time.sleep(0.01)
            outcome["after"] = "clean"
        except BaseException as late:  # noqa: BLE001 - what the test looks for
            outcome["after"] = f"a stop landed after the run: {late!r}"
        finally:
            set_current_job(None)

    thread = threading.Thread(target=run)
    thread.start()
    registered.wait(5)
    JobWatchdog._stop(job, JobCancelled, StopReason.CANCELLED_WHILE_RUNNING)
    thread.join(5)
    return outcome


def test_a_run_stopped_by_the_watchdog_is_stopped_once_and_nothing_lands_after_it(busy_switching):
    outcomes = [_one_round(number) for number in range(ROUNDS)]

    late = [outcome for outcome in outcomes if outcome.get("after") != "clean"]
    assert late == [], f"{len(late)} of {ROUNDS} rounds: {late[:3]}"
    # Every run was stopped: by the watchdog's exception, or by its own progress call seeing the stop
    assert all("stopped" in outcome for outcome in outcomes)
    assert not watchdog._running


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        (StopReason.timed_out(60), "JobTimedOut"),
        (StopReason.CANCELLED_WHILE_RUNNING, "JobCancelled"),
        # A progress call that sees the shutdown stop must requeue the job like the watchdog's Shutdown, not cancel it.
        (StopReason.SHUTTING_DOWN, "Shutdown"),
    ],
)
def test_a_stop_seen_by_the_job_thread_raises_what_the_watchdog_would(reason, expected):
    assert type(stop_exception(reason)).__name__ == expected
