"""Stopping a run from its own thread, without racing the watchdog's stop of it.

The watchdog stops a run by raising an exception in its thread
(``jobs.worker.middleware.watchdog``); a progress call or a child-process wait
that sees the stop first raises it itself. Both happen under
``registry_lock``, and the thread drops the watchdog's queued exception when it
raises its own, so a run is stopped exactly once.
"""

from __future__ import annotations

from typing import NoReturn

from dramatiq.middleware.shutdown import Shutdown

from jobs.core.context import RunningJob, drop_queued_stop, registry_lock
from jobs.core.enums import StopReason
from jobs.core.exceptions import JobCancelled, JobTimedOut


def stop_exception(reason: str) -> BaseException:
    """The exception that stops a run for ``reason``: the one the watchdog would raise for it."""
    if StopReason.is_timeout(reason):
        return JobTimedOut(reason)
    if reason == StopReason.SHUTTING_DOWN:
        return Shutdown(reason)  # requeued by the mirror, not cancelled
    return JobCancelled(reason)


def raise_stop(job: RunningJob, reason: str) -> NoReturn:
    """Stop the current run from its own thread (a progress call saw the stop), once."""
    with registry_lock:
        job.stop_reason = job.stop_reason or reason
        drop_queued_stop()
    raise stop_exception(job.stop_reason)
