"""The slow-thumbnails alert times each document, on real thumbnail workers.

A thumbnails batch fans out one child job per document; the rule
(``ALERT_THUMBNAILS_DURATION_THRESHOLD``, 120 s, shortened here) reads each
child's own run. A document is held past the limit by a real PostgreSQL
row lock on its row (as a long transaction elsewhere would): its child
waits to record its thumbnails until the test lets go.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest
from django.utils import timezone

from documents.models import Document
from jobs.models import Job, JobStatus
from jobs.models.alert import Alert, AlertStatus
from jobs.ops.alerts.evaluator import evaluate_alerts
from jobs.worker.pausing import pause_queue, resume_queue
from tests.documents import pdfs
from tests.jobs.helpers import start, wait_status, wait_terminal
from tests.workers import database_url, wait_for

#: The shortened limit: far above what rendering one small page takes, far below the hold.
LIMIT_S = 6


@pytest.fixture
def slack(settings, webhook):
    settings.SLACK_WEBHOOK_URL = webhook.url("/slack")
    settings.PAGER_WEBHOOK_URL = ""
    settings.ALERT_WEBHOOK_BACKOFF_S = 0.01
    settings.ALERT_THUMBNAILS_DURATION_THRESHOLD = LIMIT_S
    settings.ALERT_THUMBNAILS_DURATION_FOR_S = 0
    return webhook


def _slow_thumbnail_messages(slack) -> list[str]:
    return [text for text in slack.texts("/slack") if "*Slow thumbnails*" in text and "firing" in text]


@contextmanager
def row_locked(document: Document) -> Iterator[None]:
    """Hold ``SELECT ... FOR UPDATE`` on the document's row from a connection of the test's own."""
    with psycopg.connect(database_url(), autocommit=False) as connection:
        connection.execute(f"SELECT 1 FROM {Document._meta.db_table} WHERE id = %s FOR UPDATE", [document.id])
        try:
            yield
        finally:
            connection.rollback()


@pytest.mark.slow
def test_one_document_held_past_the_limit_fires_naming_it_and_not_its_quick_neighbours(
    pools, user, document_for, media_root, slack
):
    # Given a batch of three documents, one of which cannot record its thumbnails (its row is locked)
    quick = [document_for(user, pdfs.text_pdf_bytes([f"quick {n}"])) for n in range(2)]
    held = document_for(user, pdfs.text_pdf_bytes(["held"]))
    pools("thumbnails", threads=3, env={"MEDIA_ROOT": str(media_root)})
    with row_locked(held):
        batch = start("thumbnails", user, document_ids=[str(quick[0].id), str(held.id), str(quick[1].id)])
        held_child = wait_for(lambda: Job.objects.filter(parent=batch, arguments__document_id=str(held.id)).first(), 30)
        wait_status(held_child, JobStatus.ACTIVE, timeout=60)
        for document in quick:
            child = Job.objects.get(parent=batch, arguments__document_id=str(document.id))
            assert wait_terminal(child, timeout=60).status == JobStatus.COMPLETED
        # When the held document's run passes the limit (the rules are evaluated meanwhile)
        wait_for(lambda: evaluate_alerts() and _slow_thumbnail_messages(slack), LIMIT_S * 4, 0.5, "the alert")
    # Then one alert fired, naming the held document and neither quick one
    [message] = _slow_thumbnail_messages(slack)
    assert f"document {held.id}" in message, message
    assert all(str(document.id) not in message for document in quick), message
    # And once let go, the batch completes with every document's thumbnails
    assert wait_terminal(batch, timeout=60).status == JobStatus.COMPLETED
    held.refresh_from_db()
    assert held.thumbnail_sizes()


@pytest.mark.slow
def test_a_batch_that_waited_past_the_limit_with_quick_documents_fires_nothing(
    pools, user, document_for, media_root, slack
):
    # Given a batch of quick documents that waits in its queue longer than the limit
    documents = [document_for(user, pdfs.text_pdf_bytes([f"page {n}"])) for n in range(3)]
    pause_queue("thumbnails")
    try:
        pools("thumbnails", threads=2, env={"MEDIA_ROOT": str(media_root)})
        batch = start("thumbnails", user, document_ids=[str(document.id) for document in documents])
        wait_for(
            lambda: (timezone.now() - batch.created_at).total_seconds() > LIMIT_S + 1, LIMIT_S * 4, 0.5, "the wait"
        )
    finally:
        resume_queue("thumbnails")
    # When it runs (requested to done: longer than the limit) and the rules are evaluated
    assert wait_terminal(batch, timeout=90).status == JobStatus.COMPLETED
    evaluate_alerts()
    # Then nothing fired: each document took its own few moments
    assert _slow_thumbnail_messages(slack) == []
    assert not Alert.objects.filter(rule="thumbnails_duration", status=AlertStatus.FIRING).exists()
