"""What a live client is shown: a snapshot from the Job row, then only events that move it forward."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet

from jobs.core.access import visible_to
from jobs.models import ACTIVE_STATUSES, TERMINAL_STATUSES, Job, JobStatus

#: How many unfinished jobs a stream's snapshot lists (newest first).
STREAM_SNAPSHOT_LIMIT = 100


def jobs_visible_to(user: Any) -> QuerySet[Job]:
    """Staff see every job; anyone else only their own."""
    return visible_to(Job.objects.all(), user)


def snapshot_of(job: Job) -> dict[str, Any]:
    """The job as the database has it now, in the shape of an event."""
    return {
        "type": "snapshot",
        "job_id": str(job.id),
        "job_type": job.type,
        "status": job.status,
        "progress": job.progress,
        "data": job.progress_data,
        "error": job.error_message,
    }


def unfinished_snapshots(user: Any) -> list[dict[str, Any]]:
    jobs = jobs_visible_to(user).filter(status__in=ACTIVE_STATUSES)[:STREAM_SNAPSHOT_LIMIT]
    return [snapshot_of(job) for job in jobs]


class LatestState:
    """Per job, the state last sent; drops events a snapshot already overtook.

    A consumer joins the job's group before reading the snapshot, so no event
    is lost, but an event written just before the read can arrive after it.
    Progress never goes back within a status, a repeated status says nothing
    new, and a "created" event (sent by the web process, so possibly after
    the worker's first events) only counts for a job not seen yet.
    """

    _LIMIT = 10_000

    def __init__(self) -> None:
        self._last: dict[str, tuple[str, int]] = {}

    def remember(self, message: dict[str, Any]) -> None:
        if len(self._last) > self._LIMIT:
            self._last.clear()
        self._last[message["job_id"]] = (message["status"], int(message.get("progress") or 0))

    def is_news(self, event: dict[str, Any]) -> bool:
        last = self._last.get(event["job_id"])
        if last is None:
            return True
        status, progress = last
        if event["type"] == "created":
            return False
        if event["type"] == "progress":
            if status in TERMINAL_STATUSES:
                return False
            return status != JobStatus.ACTIVE or int(event["progress"] or 0) >= progress
        return bool(event["status"] != status)

    def advance(self, event: dict[str, Any]) -> dict[str, Any]:
        """The event as sent: a status event without progress keeps the last known progress."""
        last = self._last.get(event["job_id"])
        if event.get("progress") is None:
            event = {**event, "progress": last[1] if last else None}
        if event["progress"] is not None:
            self.remember(event)
        else:
            self._last[event["job_id"]] = (event["status"], 0)
        return event
