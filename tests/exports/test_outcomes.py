"""How an export learns its job's final outcome: through the csv-export type's hooks."""

from __future__ import annotations

import pytest

from exports.models import Export, ExportStatus
from jobs.models import JobStatus
from tests.exports.helpers import seed_many_jobs
from tests.jobs.helpers import start, wait_terminal
from tests.workers import wait_for


def _settled(export: Export) -> Export:
    export.refresh_from_db()
    return export if export.status not in (ExportStatus.PENDING, ExportStatus.RUNNING) else None


@pytest.mark.slow
def test_export_stopped_by_its_time_limit_on_its_first_attempt_fails_with_the_reason(pools, media_root, user):
    # Given a csv-export worker whose time limit is 2 s (and two attempts per job), and an
    # export far too large for it (100,000 rows through openpyxl take many seconds)
    pools("csv-export", env={"MEDIA_ROOT": str(media_root), "QUEUE_CSV_EXPORT_TIME_LIMIT": "2"})
    seed_many_jobs(user, 100_000)
    # When the user asks for it
    job = start("csv-export", user, query_params={"dataset": "jobs", "filters": {"type": "bulk"}}, format="xlsx")
    assert job.max_attempts == 2
    job = wait_terminal(job, timeout=60)
    # Then the platform stopped it on its first attempt, for good (a timeout is never retried)
    assert job.status == JobStatus.FAILED
    assert job.error_message == "timed out after 2 s"
    assert job.attempts == 1
    # And the export says so too, instead of waiting for a retry that never comes
    export = wait_for(lambda: _settled(Export.objects.get(job=job)), timeout=10, what="the export to settle")
    assert export.status == ExportStatus.FAILED
    assert export.error_message == "timed out after 2 s"
    assert export.finished_at is not None
    assert not list(media_root.rglob("*.part"))
