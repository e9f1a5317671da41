"""Keeps the worker log for surprises: expected job outcomes are logged as one line."""

from __future__ import annotations

import logging

from dramatiq.middleware.shutdown import Shutdown

from jobs.exceptions import JobCancelled, JobTimedOut, PermanentJobError, Reschedule

#: Outcomes the platform handles by design; Dramatiq would log each with a traceback.
EXPECTED = (JobCancelled, JobTimedOut, Reschedule, Shutdown, PermanentJobError)


class ExpectedJobOutcomes(logging.Filter):
    """Turns Dramatiq's "unhandled exception" errors for expected outcomes into info lines.

    The job row keeps the full traceback of a real failure either way.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and "haven't added the Results middleware" in record.msg:
            return False  # results are kept in the Job row, not in a Results backend
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, EXPECTED):
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg = f"{record.getMessage()} ({type(exc).__name__}: {exc})"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
        return True


def install() -> None:
    logging.getLogger("dramatiq.worker.WorkerThread").addFilter(ExpectedJobOutcomes())
