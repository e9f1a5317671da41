"""How OCR jobs end for their documents: the hooks, their idempotence, and the reconciler's second delivery."""

from __future__ import annotations

from datetime import timedelta
from importlib import import_module

from django.apps import apps as django_apps
from django.utils import timezone

from documents.models import DocumentStatus
from documents.outcomes import documents_awaiting_ocr
from documents.services import documents_by_status
from jobs.dispatch.outcomes import deliver_outcome, deliver_unsettled
from jobs.models import Schedule
from jobs.public import StopReason
from jobs.state import transitions
from tests.documents import pdfs
from tests.factories import DocumentFactory
from tests.jobs.helpers import start


def test_the_reconciler_settles_a_document_whose_failed_hook_was_never_delivered(user, document_for):
    # Given an OCR job stopped by its time limit, whose worker died before it ran the hook
    document = document_for(user, pdfs.text_pdf_bytes(["a page"]))
    job = start("pdf-ocr", user, file_id=str(document.id))
    assert transitions.mark_failed(str(job.id), StopReason.timed_out(600))
    document.refresh_from_db()
    assert document.status == DocumentStatus.PROCESSING
    # Then the document still waits on that job
    assert [str(job_id) for job_id in documents_awaiting_ocr()] == [str(job.id)]
    # When the reconciler delivers the outcomes that domain rows still wait for
    assert deliver_unsettled(0) == 1
    # Then the timeout counted as final: the document failed with the reason
    document.refresh_from_db()
    assert document.status == DocumentStatus.FAILED
    assert document.error == "OCR failed: timed out after 600 s"
    # And nothing is left to settle
    assert list(documents_awaiting_ocr()) == []
    assert deliver_unsettled(0) == 0


def test_a_hook_delivered_again_changes_nothing(user, document_for):
    document = document_for(user, pdfs.text_pdf_bytes(["a page"]))
    job = start("pdf-ocr", user, file_id=str(document.id))
    assert transitions.mark_cancelled(str(job.id))
    assert deliver_outcome(str(job.id))
    document.refresh_from_db()
    first = (document.status, document.error, document.updated_at)
    assert first[:2] == (DocumentStatus.FAILED, "OCR cancelled")
    assert deliver_outcome(str(job.id))
    document.refresh_from_db()
    assert (document.status, document.error, document.updated_at) == first


def test_a_late_hook_of_an_earlier_ocr_job_leaves_the_new_run_alone(user, document_for):
    # Given a document whose first OCR job was cancelled, and a second one now running
    document = document_for(user, pdfs.text_pdf_bytes(["a page"]))
    earlier = start("pdf-ocr", user, file_id=str(document.id))
    assert transitions.mark_cancelled(str(earlier.id))
    later = start("pdf-ocr", user, file_id=str(document.id))
    assert later.id != earlier.id
    # When the earlier job's hook arrives only now
    assert deliver_outcome(str(earlier.id))
    # Then the document still waits on the later job
    document.refresh_from_db()
    assert (document.status, document.ocr_job_id) == (DocumentStatus.PROCESSING, later.id)


def test_documents_activity_counts_each_users_recent_documents_by_status(user, other_user):
    DocumentFactory(owner=user, status=DocumentStatus.READY)
    DocumentFactory(owner=user, status=DocumentStatus.READY)
    DocumentFactory(owner=user, status=DocumentStatus.FAILED)
    DocumentFactory(owner=user, status=DocumentStatus.READY, created_at=timezone.now() - timedelta(days=2))
    DocumentFactory(owner=other_user, status=DocumentStatus.UPLOADED)
    since = timezone.now() - timedelta(days=1)
    assert documents_by_status([user.pk], since) == {user.pk: {"ready": 2, "failed": 1}}


def test_the_thumbnail_maintenance_schedule_comes_from_the_documents_migration(db):
    migration = import_module("documents.migrations.0002_thumbnail_maintenance_schedule")
    Schedule.objects.filter(name="thumbnail maintenance").delete()
    migration.create_schedule(django_apps, None)
    schedule = Schedule.objects.get(name="thumbnail maintenance")
    assert (schedule.cron, schedule.job_type, schedule.grace_seconds) == ("0 2 * * *", "thumbnail-maintenance", 21600)
    # A row made before (by jobs 0003, then edited by staff) is left as it is
    Schedule.objects.filter(pk=schedule.pk).update(cron="0 3 * * *")
    migration.create_schedule(django_apps, None)
    assert Schedule.objects.get(name="thumbnail maintenance").cron == "0 3 * * *"
