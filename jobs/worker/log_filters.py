"""Keeps the worker log for surprises: expected job outcomes are logged as one line."""

from __future__ import annotations

import functools
import logging

import dramatiq.worker
from dramatiq.broker import Broker
from dramatiq.middleware.shutdown import Shutdown

from jobs.core.exceptions import JobCancelled, JobTimedOut, PermanentJobError, Reschedule
from jobs.worker.middleware.mirror import JobMirror

#: Outcomes the platform handles by design; Dramatiq would log each with a traceback.
EXPECTED = (JobCancelled, JobTimedOut, Reschedule, Shutdown, PermanentJobError)


class ExpectedJobOutcomes(logging.Filter):
    """Turns Dramatiq's "unhandled exception" errors for expected outcomes into info lines.

    The job row keeps the full traceback of a real failure either way.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, EXPECTED):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg = f"{record.getMessage()} ({type(exc).__name__}: {exc})"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
        return True


@functools.lru_cache(maxsize=8)  # as Dramatiq's own: asked once per message
def _results_are_kept(broker: Broker) -> bool:
    """Dramatiq's check, answering yes when the Job mirror keeps actors' return values."""

    return any(isinstance(m, JobMirror) for m in broker.middleware) or _dramatiqs_check(broker)


_dramatiqs_check = dramatiq.worker.has_results_middleware


def install() -> None:
    logging.getLogger("dramatiq.worker.WorkerThread").addFilter(ExpectedJobOutcomes())
    # A worker thread warns about every actor that returns a value when the
    # broker has no Results middleware (it only counts Dramatiq's own
    # class). The Job row keeps results; filtering the warning out still
    # built a log record for every job (~4 % of a no-op job's CPU).
    dramatiq.worker.has_results_middleware = _results_are_kept
