"""How documents jobs end: the OCR text assembly and the outcome hooks of the documents job types.

The platform tells documents how its jobs ended through the hooks that
``job_types`` registers (``jobs.dispatch.outcomes`` says when each runs);
documents never reads a Job row to find out. The hooks are delivered at
least once, so each changes a Document only while it still waits on that
very job (``processing``, with it as ``ocr_job``): a hook delivered again,
or late after a newer OCR request, changes nothing.

* ``pdf-ocr``: ``on_children_done`` assembles the text once the last
  page-range child has ended (what it returns is the job's result, an error
  fails the job); ``on_finished`` / ``on_failed`` / ``on_cancelled`` settle
  the Document; ``unsettled`` names the jobs that documents still wait on,
  so that the reconciler delivers a lost hook again.
* ``thumbnails``: ``on_children_done`` counts the documents and keeps each
  broken one's error.

Nothing here starts a job, so ``job_types`` can import it; the modules that
start jobs (``services``, ``ocr``, ``thumbnails``) sit above both.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from django.db.models import Count
from django.utils import timezone

from documents.exceptions import DocumentError
from documents.models import Document, DocumentPage, DocumentStatus, PageSource, PageStatus
from jobs.public import ChildrenSummary, FailedChild, JobOutcome, fenced, progress, set_parent_progress

#: Progress stages of an OCR job, as the customer described them.
LOADED, PAGES_START, PAGES_END, ASSEMBLED = 10, 20, 90, 95
#: The key under which the parent run records when it started, in the data it
#: fans out with: the hooks see it as ``JobOutcome.data`` (the outcome does
#: not carry the job's own start time).
STARTED_AT = "started_at"


def ocr_progress_data(document_id: str, total: int) -> dict[str, Any]:
    finished = DocumentPage.objects.filter(
        document_id=document_id, status__in=(PageStatus.DONE, PageStatus.FAILED)
    ).count()
    return {"pages_processed": finished, "total_pages": total, "document_id": document_id}


# -- pdf-ocr: assembly -----------------------------------------------------------
def finish_document_ocr(
    document_id: str,
    *,
    started_at: datetime | None,
    parent_id: str | None = None,
    unsuccessful: Sequence[FailedChild] = (),
) -> dict[str, Any]:
    """Every page is read or recorded with its error: assemble, mark the document, summarise.

    Called by the parent run itself when no page was left to read (a retry),
    otherwise by ``on_ocr_children_done`` with the page-range children that
    did not complete: their pages still pending carry the child's reason.
    """
    # The writes are fenced: from the parent run itself, refused once another worker took its
    # job over; from the hook (no run on the thread), a plain transaction.
    with fenced():
        for child in unsuccessful:
            DocumentPage.objects.filter(
                document_id=document_id,
                status=PageStatus.PENDING,
                number__gte=child.arguments["first_page"],
                number__lte=child.arguments["last_page"],
            ).update(status=PageStatus.FAILED, error=f"its page-range job {child.status}: {child.error}"[:2000])
    counts = dict(
        DocumentPage.objects.filter(document_id=document_id).values_list("status").annotate(n=Count("id")).order_by()
    )
    by_source = dict(
        DocumentPage.objects.filter(document_id=document_id, status=PageStatus.DONE)
        .values_list("source")
        .annotate(n=Count("id"))
        .order_by()
    )
    total = sum(counts.values())
    done, failed = counts.get(PageStatus.DONE, 0), counts.get(PageStatus.FAILED, 0)
    data = {"pages_processed": done + failed, "total_pages": total, "document_id": document_id}
    if parent_id is not None:
        set_parent_progress(parent_id, ASSEMBLED, "Text assembled", **data)
    else:
        progress(ASSEMBLED, "Text assembled", force=True, **data)
    if done == 0:
        first_error = (
            DocumentPage.objects.filter(document_id=document_id, status=PageStatus.FAILED)
            .order_by("number")
            .values_list("error", flat=True)
            .first()
        )
        reason = f"no page could be read ({failed} failed): {first_error or 'unknown error'}"
        # This reason says more than the job's error would: the on_failed hook that follows finds it set.
        with fenced():
            Document.mark_failed(document_id, reason)
        raise DocumentError(reason)
    with fenced():
        Document.mark_ready(document_id)
    seconds = (timezone.now() - started_at).total_seconds() if started_at else None
    return {
        "document_id": document_id,
        "pages": total,
        "text_layer_pages": by_source.get(PageSource.TEXT_LAYER, 0),
        "ocr_pages": by_source.get(PageSource.OCR, 0),
        "failed_pages": failed,
        "seconds": round(seconds, 2) if seconds else None,
        "pages_per_minute": round(total / seconds * 60, 1) if seconds else None,
    }


# -- pdf-ocr: hooks ----------------------------------------------------------------
def on_ocr_children_done(parent: JobOutcome, summary: ChildrenSummary) -> dict[str, Any]:
    """The last page-range child has ended: assemble the text; the result is the job's."""
    started = parent.data.get(STARTED_AT)
    return finish_document_ocr(
        str(parent.arguments["document_id"]),
        started_at=datetime.fromisoformat(started) if isinstance(started, str) else None,
        parent_id=parent.job_id,
        unsuccessful=summary.unsuccessful,
    )


def on_ocr_finished(outcome: JobOutcome) -> None:
    """The assembly marked the document ready already; this settles one the reconciler finds still waiting."""
    Document.settle_ocr_job(outcome.job_id, DocumentStatus.READY)


def on_ocr_failed(outcome: JobOutcome) -> None:
    """The job failed for good (a permanent error, its last attempt, its time limit...): so did the OCR."""
    reason = f"OCR failed: {outcome.error}" if outcome.error else "OCR failed"
    Document.settle_ocr_job(outcome.job_id, DocumentStatus.FAILED, reason)


def on_ocr_cancelled(outcome: JobOutcome) -> None:
    Document.settle_ocr_job(outcome.job_id, DocumentStatus.FAILED, "OCR cancelled")


def documents_awaiting_ocr() -> Iterable[Any]:
    """The OCR jobs of documents still ``processing``, longest waiting first."""
    return (
        Document.objects.filter(status=DocumentStatus.PROCESSING, ocr_job__isnull=False)
        .order_by("updated_at")
        .values_list("ocr_job_id", flat=True)
    )


# -- thumbnails: hook --------------------------------------------------------------
def on_thumbnail_children_done(parent: JobOutcome, summary: ChildrenSummary) -> dict[str, Any]:
    """The parent's result: what was made, and each broken document's own error."""
    return {
        "documents": summary.children,
        "completed": summary.completed,
        "failed": summary.failed + summary.cancelled,
        "errors": {str(child.arguments["document_id"]): child.error for child in summary.unsuccessful},
    }
