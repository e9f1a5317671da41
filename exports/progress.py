"""An export's progress: "Generating report... n of N records", relayed from the child's counters.

The child that writes the file publishes (total, rows written) in two
shared integers; a thread of the job's process copies them into the job's
progress at most every ``JOBS_PROGRESS_MIN_INTERVAL_S``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from django.conf import settings
from django.db import connection

from jobs.public import Fence, write_progress_of

logger = logging.getLogger(__name__)


class ExportStopped(Exception):  # noqa: N818 - a signal from the child, not a failure
    """The job was cancelled (or taken over by another worker) while the child wrote the file."""


class ExportProgress:
    """Writes "Generating report... n of N records" to the job at most every interval."""

    def __init__(self, job_id: str | None, export_id: str, *, fence: Fence | None = None) -> None:
        self.job_id = job_id
        self.export_id = export_id
        #: The run's fencing token, taken in the job's thread (``current_fence()``): the relay's
        #: thread has no run of its own, and a stale run's reports must be refused.
        self.fence = fence
        self.last = 0.0
        self.written: tuple[int, int] | None = None

    def update(self, total: int, rows: int, *, force: bool = False) -> None:
        if self.job_id is None or (total, rows) == self.written:
            return
        now = time.monotonic()
        if not force and rows and now - self.last < settings.JOBS_PROGRESS_MIN_INTERVAL_S:
            return
        self.last = now
        self.written = (total, rows)
        percent = min(99, rows * 100 // total) if total else 0
        data = {
            "message": f"Generating report... {rows:,} of {total:,} records",
            "export_id": self.export_id,
            "rows_written": rows,
            "total_rows": total,
        }
        if not write_progress_of(self.job_id, percent, data, fence=self.fence):
            raise ExportStopped("cancelled while running, or taken over by another worker")


class ProgressRelay:
    """A thread that copies the child's (total, rows) counters into the job's progress.

    When the job was cancelled, or the run lost its job, it just stops: the
    watchdog kills the child.
    """

    def __init__(self, reporter: ExportProgress, cells: Any) -> None:
        self.reporter = reporter
        self.cells = cells
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="export-progress", daemon=True)

    def __enter__(self) -> ProgressRelay:
        if self.reporter.job_id is not None:
            self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        if self.thread.is_alive():
            self.thread.join()

    def _run(self) -> None:
        interval = max(0.05, settings.JOBS_PROGRESS_MIN_INTERVAL_S)
        try:
            while not self.stopping.wait(interval):
                total, rows = self.cells[0], self.cells[1]
                if total >= 0:
                    self.reporter.update(total, rows, force=True)
        except ExportStopped:
            pass
        except Exception:
            logger.warning("Could not relay the progress of export %s", self.reporter.export_id, exc_info=True)
        finally:
            connection.close()
