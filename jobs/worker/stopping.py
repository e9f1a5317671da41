"""Stopping a run from its own thread, without racing the watchdog's stop of it.

The watchdog stops a run by raising an exception in its thread
(``jobs.worker.middleware.watchdog``); a progress call or a child-process wait
that sees the stop first raises it itself. Both happen under
``registry_lock``, and the thread drops the watchdog's queued exception when it
raises its own, so a run is stopped exactly once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn

from dramatiq.middleware.shutdown import Shutdown

from jobs.core.context import RunningJob, current_job, drop_queued_stop, registry_lock
from jobs.core.enums import StopReason
from jobs.core.exceptions import JobCancelled, JobTimedOut, RunSuperseded


def stop_exception(reason: str) -> BaseException:
    """The exception that stops a run for ``reason``: the one the watchdog would raise for it."""
    if StopReason.is_timeout(reason):
        return JobTimedOut(reason)
    if reason == StopReason.SHUTTING_DOWN:
        return Shutdown(reason)  # requeued by the mirror, not cancelled
    if reason == StopReason.SUPERSEDED:
        return RunSuperseded(reason)  # the job belongs to another run now: nothing to write
    return JobCancelled(reason)


@contextmanager
def uninterrupted() -> Iterator[None]:
    """A step the watchdog must not cut in the middle: a stop asked meanwhile is raised when it ends.

    For work whose outcome must be recorded once it happened (an email the
    SMTP server accepted): an exception landing between the send and its
    record would leave no trace of the send. Children are still killed at
    once, and the time limit still holds for blocks that wait on them.
    """
    job = current_job()
    if job is None:
        yield
        return
    with registry_lock:
        job.critical += 1
    try:
        yield
    finally:
        with registry_lock:
            job.critical -= 1
            deferred = job.critical == 0 and bool(job.stop_reason)
    if deferred:  # reached only when the block ended without an exception of its own
        raise_stop(job, job.stop_reason)


def raise_stop(job: RunningJob, reason: str) -> NoReturn:
    """Stop the current run from its own thread (a progress call saw the stop), once."""
    with registry_lock:
        job.stop_reason = job.stop_reason or reason
        drop_queued_stop()
    raise stop_exception(job.stop_reason)
