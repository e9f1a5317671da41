"""Run again: a finished job runs as a new job linked to it, by the rules of jobs.dispatch.rerun.

The end-to-end runs (real workers, a real SMTP server, the admin in a browser) are in
tests/browser/test_rerun.py and tests/campaigns/test_rerun.py.
"""

from __future__ import annotations

from typing import Any, cast

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from documents.models import DocumentStatus
from exports.models import Export, ExportStatus
from jobs.core.exceptions import JobNotRerunnable
from jobs.core.origin import AuditAction, Origin, Via
from jobs.dispatch.registry import get_job_type
from jobs.dispatch.rerun import rerun_job
from jobs.models import Job, JobPriority, JobStatus
from jobs.models.audit import AuditEvent
from tests.factories import DocumentFactory, UserFactory

pytestmark = pytest.mark.django_db

CANARY_ARGUMENTS = {"queue": "maintenance", "seconds": 0, "steps": 1, "fail": False}


def _job(job_type: str, status: str = JobStatus.COMPLETED, **fields: Any) -> Job:
    """A job row as a past run left it (no message is sent for it)."""
    kind = get_job_type(job_type)
    fields.setdefault("arguments", CANARY_ARGUMENTS if job_type == "canary" else {})
    finished = {"finished_at": timezone.now()} if status in (JobStatus.COMPLETED, JobStatus.FAILED) else {}
    return Job.objects.create(type=kind.name, queue=kind.queue, actor=kind.actor, status=status, **finished, **fields)


def _operator(**fields: Any) -> Any:
    return UserFactory(is_staff=True, is_superuser=True, **fields)


def _as_admin(user: Any) -> Origin:
    return Origin.of_user(user, Via.ADMIN)


def test_a_finished_job_runs_again_as_a_new_job_of_its_owner_linked_to_it_and_audited(clean_redis):
    # Given a customer's completed job that was started with an idempotency key, at high priority
    owner, operator = UserFactory(), _operator(username="ops-anna")
    original = _job("canary", owner=owner, idempotency_key="key-1", priority=JobPriority.HIGH)
    # When an operator runs it again from the admin
    rerun = rerun_job(original, _as_admin(operator))
    # Then a new waiting job does the same work for the same owner, linked to the original
    rerun.refresh_from_db()
    assert rerun.pk != original.pk and rerun.rerun_of_id == original.pk
    assert (rerun.type, rerun.queue, rerun.actor, rerun.arguments, rerun.priority) == (
        "canary",
        "maintenance",
        "canary_maintenance",
        CANARY_ARGUMENTS,
        JobPriority.HIGH,
    )
    assert rerun.status == JobStatus.QUEUED and rerun.owner == owner
    # And the operator is who started it; the key stays with the original (a copy would collide)
    assert (rerun.created_via, rerun.created_by, rerun.idempotency_key) == (Via.ADMIN, "ops-anna", None)
    original.refresh_from_db()
    assert (original.status, original.idempotency_key) == (JobStatus.COMPLETED, "key-1")
    assert list(original.reruns.all()) == [rerun]
    # And the audit trail says who ran which job again, and which job that made
    event = AuditEvent.objects.get(action=AuditAction.RERUN)
    assert (event.target_type, event.target_id, event.actor, event.via) == ("job", str(original.pk), operator, "admin")
    assert event.detail == {"type": "canary", "new_job": str(rerun.pk)}


@pytest.mark.parametrize("status", [JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.ACTIVE, JobStatus.RETRYING])
def test_an_unfinished_job_does_not_run_again(status, clean_redis):
    job = _job("canary", status=status)
    with pytest.raises(JobNotRerunnable, match="only a finished job runs again"):
        rerun_job(job, _as_admin(_operator()))
    assert not Job.objects.filter(rerun_of=job).exists() and not AuditEvent.objects.exists()


def test_a_fan_out_child_or_an_internal_type_runs_again_only_through_its_parent(clean_redis):
    parent = _job("pdf-ocr", arguments={"document_id": "x"})
    child = _job("pdf-ocr-pages", parent=parent, arguments={"document_id": "x", "first_page": 1, "last_page": 1})
    with pytest.raises(JobNotRerunnable, match=f"part of job {parent.pk}"):
        rerun_job(child, _as_admin(_operator()))
    orphan = _job("pdf-ocr-pages")
    with pytest.raises(JobNotRerunnable, match="started by the platform only"):
        rerun_job(orphan, _as_admin(_operator()))


def test_a_staff_only_type_runs_again_only_for_staff_holding_its_permission(clean_redis):
    # Given a finished canary (staff only) and a finished email batch (staff with campaigns.add_campaign)
    canary = _job("canary")
    batch = _job("email-batch", arguments={"campaign_id": 1})
    # Then a customer may not run the canary again, nor staff without the campaign permission the batch
    with pytest.raises(JobNotRerunnable, match="for staff only"):
        rerun_job(canary, _as_admin(UserFactory()))
    staff = UserFactory(is_staff=True)
    with pytest.raises(JobNotRerunnable, match="need the campaigns.add_campaign permission"):
        rerun_job(batch, _as_admin(staff))
    # And staff holding it may
    staff.user_permissions.add(Permission.objects.get(codename="add_campaign"))
    staff = type(staff).objects.get(pk=staff.pk)  # permissions are cached per instance
    assert rerun_job(batch, _as_admin(staff)).arguments == {"campaign_id": 1}


def test_an_export_runs_again_as_a_new_export_of_the_same_query_and_keeps_the_first_file(clean_redis):
    # Given a customer's completed export
    owner = UserFactory()
    query = {"filters": {"status": ["completed"]}, "fields": ["id", "type"], "ordering": "-created_at"}
    first = Export.objects.create(
        owner=owner, dataset="jobs", query_params=query, format="xlsx", status=ExportStatus.COMPLETED, file="e.xlsx"
    )
    original = _job("csv-export", owner=owner, arguments={"export_id": str(first.id)})
    Export.objects.filter(id=first.id).update(job=original)
    # When it runs again
    rerun = rerun_job(original, _as_admin(_operator()))
    # Then the new job writes a new export of the same query, format and owner
    second = Export.objects.get(job=rerun)
    assert second.id != first.id and rerun.arguments == {"export_id": str(second.id)}
    assert (second.owner, second.dataset, second.query_params, second.format, second.status) == (
        owner,
        "jobs",
        query,
        "xlsx",
        ExportStatus.PENDING,
    )
    assert rerun.progress_data == {"export_id": str(second.id), "message": "Waiting for a worker"}
    # And the first export and its file stay as they were
    first.refresh_from_db()
    assert (first.status, first.file.name, first.job_id) == (ExportStatus.COMPLETED, "e.xlsx", original.pk)


def test_an_ocr_job_runs_again_on_its_document_unless_the_documents_ocr_is_running(clean_redis):
    # Given a document whose OCR job failed
    document = DocumentFactory(status=DocumentStatus.FAILED)
    original = _job(
        "pdf-ocr", status=JobStatus.FAILED, owner=document.owner, arguments={"document_id": str(document.id)}
    )
    type(document).objects.filter(id=document.id).update(ocr_job=original)
    # When it runs again
    rerun = rerun_job(original, _as_admin(_operator()))
    # Then the document follows the new job (its outcome hooks settle the document)
    document.refresh_from_db()
    assert (document.ocr_job_id, document.status) == (rerun.pk, DocumentStatus.PROCESSING)
    assert rerun.arguments == {"document_id": str(document.id)} and rerun.owner == document.owner
    # And while that one is unfinished, the original cannot run again a second time
    with pytest.raises(JobNotRerunnable, match=f"already running in job {rerun.pk}"):
        rerun_job(original, _as_admin(_operator()))


# -- the admin ----------------------------------------------------------------------------------


@pytest.fixture
def operator_client(db: None) -> Client:
    client = Client()
    client.force_login(cast(Any, _operator(username="ops-ben")))
    return client


def _messages(response: Any) -> list[tuple[str, str]]:
    return [(message.level_tag, str(message)) for message in response.context["messages"]]


def test_the_admin_action_runs_finished_jobs_again_and_skips_unfinished_ones(operator_client, clean_redis):
    done, failed, waiting = _job("canary"), _job("canary", status=JobStatus.FAILED), _job("canary", JobStatus.QUEUED)
    response = operator_client.post(
        "/admin/jobs/job/",
        {"action": "rerun_jobs", "_selected_action": [str(done.pk), str(failed.pk), str(waiting.pk)]},
        follow=True,
    )
    reruns = {job.rerun_of_id: job for job in Job.objects.filter(rerun_of__isnull=False)}
    assert set(reruns) == {done.pk, failed.pk}
    (started, link_text), skipped = _messages(response)
    assert started == "success" and link_text.startswith("Started 2 new job(s): ")
    assert all(f'href="/admin/jobs/job/{job.pk}/change/"' in link_text for job in reruns.values())
    assert skipped == ("warning", "Skipped 1 job(s) still waiting or running: only finished jobs run again.")
    assert all(job.created_by == "ops-ben" for job in reruns.values())


def test_a_finished_jobs_page_has_a_run_again_button_that_opens_the_new_jobs_page(operator_client, clean_redis):
    # Given a finished job's admin page
    original = _job("canary")
    page = operator_client.get(f"/admin/jobs/job/{original.pk}/change/")
    assert f'action="/admin/jobs/job/{original.pk}/rerun/"' in page.content.decode()
    # When the operator presses the button
    response = operator_client.post(f"/admin/jobs/job/{original.pk}/rerun/", follow=True)
    # Then they see the new job's page, which says what it re-runs, with a message
    rerun = Job.objects.get(rerun_of=original)
    assert response.redirect_chain == [(f"/admin/jobs/job/{rerun.pk}/change/", 302)]
    html = response.content.decode()
    assert f'<a href="/admin/jobs/job/{original.pk}/change/">{original.pk}</a>' in html  # the "re-run of" field
    assert _messages(response)[0][0] == "success"
    # And the new job, still waiting, has no button; the original lists its re-run
    assert 'id="rerun-button"' not in html
    assert (
        f'<a href="/admin/jobs/job/{rerun.pk}/change/">{rerun.pk}</a>'
        in operator_client.get(f"/admin/jobs/job/{original.pk}/change/").content.decode()
    )
    assert operator_client.get(f"/admin/jobs/job/{original.pk}/rerun/").status_code == 405


def test_running_a_job_again_needs_the_permission_to_control_jobs(clean_redis):
    original = _job("canary")
    viewer = UserFactory(is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_job"))
    client = Client()
    client.force_login(viewer)
    page = client.get(f"/admin/jobs/job/{original.pk}/change/")
    assert page.status_code == 200 and 'id="rerun-button"' not in page.content.decode()
    assert "rerun_jobs" not in client.get("/admin/jobs/job/").content.decode()
    assert client.post(f"/admin/jobs/job/{original.pk}/rerun/").status_code == 403
    assert not Job.objects.filter(rerun_of=original).exists()


def test_a_refused_run_again_says_why_on_the_jobs_page(operator_client, clean_redis):
    orphan = _job("pdf-ocr-pages")
    response = operator_client.post(f"/admin/jobs/job/{orphan.pk}/rerun/", follow=True)
    assert response.redirect_chain == [(f"/admin/jobs/job/{orphan.pk}/change/", 302)]
    assert _messages(response) == [
        ("error", "Not run again: pdf-ocr-pages jobs are started by the platform only and do not run again.")
    ]
