"""A document's OCR counts once in the statistics, with its whole duration; its page ranges are child work."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from jobs.core.origin import JobOrigin
from jobs.models import Job, JobStatus
from jobs.ops.stats import HOUR, queue_summary, roll_up, totals_by_queue
from tests.documents import pdfs
from tests.jobs.helpers import start, wait_terminal


@pytest.mark.slow
def test_a_documents_ocr_counts_once_from_its_start_to_its_last_page_range(pools, user, document_for, media_root):
    # Given a four-page document read in one-page ranges on a real worker pool
    data = pdfs.text_pdf_bytes([f"page {n} invoice amount customer payment delivery" for n in range(1, 5)])
    document = document_for(user, data, pages=4)
    pools("pdf-processing", threads=2, env={"MEDIA_ROOT": str(media_root), "OCR_PAGES_PER_CHILD": "1"})
    # When it is read
    job = wait_terminal(start("pdf-ocr", user, file_id=str(document.id)), timeout=120)
    assert job.status == JobStatus.COMPLETED, job.error_message
    children = list(Job.objects.filter(parent=job))
    assert len(children) == 4 and {child.origin for child in children} == {JobOrigin.CHILD}
    # The parent's row spans its whole run: started at its claim (before any range), and not
    # started again when its children finished it; finished after the last range
    assert job.started_at <= min(child.started_at for child in children)
    assert job.finished_at >= max(child.finished_at for child in children)
    whole = (job.finished_at - job.started_at).total_seconds()
    # Then the statistics count one OCR job of that whole duration
    roll_up()
    now = timezone.now()
    start_, end = now - timedelta(hours=1), now + HOUR
    ocr = totals_by_queue(start_, end)["pdf-processing"]
    assert (ocr.completed, ocr.duration_count) == (1, 1)
    assert ocr.avg_duration_s == pytest.approx(whole, abs=0.001)
    assert queue_summary(start_, end)["pdf-processing"]["jobs"] == 1
    # And its page ranges are child work, four of them
    ranges = totals_by_queue(start_, end, origins=(JobOrigin.CHILD,))["pdf-processing"]
    assert ranges.completed == 4
