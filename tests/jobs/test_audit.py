"""The audit trail: how each job was started, and every cancel, retry, pause and resume with who did it.

Also: the admin's retry and cancel need ``jobs.change_job`` (viewing jobs is not enough).
"""

from __future__ import annotations

import getpass
from typing import Any, cast

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from jobs.models import AuditEvent, Job, JobStatus
from jobs.models.schedule import Schedule
from jobs.ops.scheduling.firing import fire
from jobs.worker.pausing import paused_queues, resume_queue
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _job(status: str = JobStatus.QUEUED, **fields: Any) -> Job:
    return Job.objects.create(type="canary", queue="maintenance", actor="canary", status=status, **fields)


def _staff_client(*codenames: str) -> tuple[Client, Any]:
    user: Any = UserFactory(is_staff=True)
    for codename in codenames:
        user.user_permissions.add(Permission.objects.get(codename=codename, content_type__app_label="jobs"))
    client = Client()
    client.force_login(cast(Any, user))
    return client, user


def _events() -> list[tuple[str, str, str, str, str]]:
    return list(
        AuditEvent.objects.order_by("at", "id").values_list("action", "via", "actor_label", "target_type", "target_id")
    )


# -- how each job was started ----------------------------------------------------
def test_a_job_started_through_the_api_records_the_api_and_the_user(clean_redis):
    user = UserFactory(is_staff=True)
    client = APIClient()
    client.force_authenticate(user)

    response = client.post("/api/jobs/canary", {"queue": "maintenance"}, format="json")

    assert response.status_code == 202, response.content
    job = Job.objects.get(id=response.json()["job_id"])
    assert (job.created_via, job.created_by) == ("api", user.username)


def test_a_scheduled_job_records_its_schedule(clean_redis):
    schedule = Schedule.objects.create(name="nightly cleanup", interval_seconds=60, job_type="cleanup")

    claim = fire(schedule, timezone.now())

    assert claim is not None and claim.job is not None
    assert (claim.job.created_via, claim.job.created_by) == ("schedule", "nightly cleanup")


def test_canaries_sent_by_the_command_record_the_command_and_the_os_account(clean_redis):
    call_command("jobs", "canaries")

    origins = set(Job.objects.filter(type="canary").values_list("created_via", "created_by"))
    assert origins == {("command", getpass.getuser())}


# -- cancel and retry, through each door -----------------------------------------
def test_cancel_and_retry_through_the_api_are_audited_with_the_user(clean_redis):
    owner = UserFactory()
    job = _job(owner=owner)
    client = APIClient()
    client.force_authenticate(owner)

    assert client.post(f"/api/jobs/{job.id}/cancel").status_code == 202
    assert client.post(f"/api/jobs/{job.id}/retry").status_code == 202

    assert _events() == [
        ("cancel", "api", owner.username, "job", str(job.id)),
        ("retry", "api", owner.username, "job", str(job.id)),
    ]
    assert AuditEvent.objects.filter(actor=owner).count() == 2


def test_cancel_and_retry_by_the_command_are_audited(clean_redis):
    job = _job()

    call_command("jobs", "cancel", str(job.id))
    call_command("jobs", "retry", str(job.id))

    who = getpass.getuser()
    assert _events() == [("cancel", "command", who, "job", str(job.id)), ("retry", "command", who, "job", str(job.id))]


def test_staff_who_may_only_view_jobs_get_no_retry_or_cancel_action_and_posting_one_changes_nothing(clean_redis):
    # Given staff with the view permission only, and a waiting job
    client, _ = _staff_client("view_job")
    job = _job()
    changelist = reverse("admin:jobs_job_changelist")

    # Then the list offers neither action
    page = client.get(changelist)
    assert page.status_code == 200
    assert b'value="cancel_jobs"' not in page.content and b'value="retry_jobs"' not in page.content

    # And posting the cancel action anyway leaves the job waiting, with nothing audited
    client.post(changelist, {"action": "cancel_jobs", "_selected_action": [str(job.id)]})
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    assert _events() == []


def test_staff_with_change_job_cancel_and_retry_from_the_admin_and_it_is_audited(clean_redis):
    client, operator = _staff_client("view_job", "change_job")
    job = _job()
    changelist = reverse("admin:jobs_job_changelist")
    assert b'value="cancel_jobs"' in client.get(changelist).content

    client.post(changelist, {"action": "cancel_jobs", "_selected_action": [str(job.id)]})
    client.post(changelist, {"action": "retry_jobs", "_selected_action": [str(job.id)]})

    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED
    assert _events() == [
        ("cancel", "admin", operator.username, "job", str(job.id)),
        ("retry", "admin", operator.username, "job", str(job.id)),
    ]


# -- pause and resume ----------------------------------------------------------------
def test_pausing_and_resuming_a_queue_from_the_console_and_the_command_is_audited(clean_redis):
    client, operator = _staff_client("view_job", "change_job")
    try:
        assert client.post(reverse("admin-queue-pause", args=["maintenance"])).status_code == 302
        assert "maintenance" in paused_queues()
        call_command("jobs", "resume", "maintenance")
        assert "maintenance" not in paused_queues()
    finally:
        resume_queue("maintenance")

    assert _events() == [
        ("pause", "admin", operator.username, "queue", "maintenance"),
        ("resume", "command", getpass.getuser(), "queue", "maintenance"),
    ]


def test_the_pause_command_refuses_an_unknown_queue_and_audits_nothing(clean_redis):
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="no queue named 'nope'"):
        call_command("jobs", "pause", "nope")
    assert _events() == []


def test_pausing_a_schedule_in_the_admin_is_audited(clean_redis):
    client, operator = _staff_client("view_schedule", "change_schedule")
    schedule = Schedule.objects.create(name="reports", interval_seconds=60, job_type="cleanup")

    client.post(
        reverse("admin:jobs_schedule_changelist"), {"action": "pause_schedules", "_selected_action": [schedule.pk]}
    )

    schedule.refresh_from_db()
    assert schedule.paused
    assert _events() == [("pause", "admin", operator.username, "schedule", str(schedule.pk))]


# -- the trail in the admin ------------------------------------------------------------
def test_the_audit_trail_is_listed_in_the_admin_and_cannot_be_edited(clean_redis):
    client, _ = _staff_client("view_auditevent")
    event = AuditEvent.objects.create(
        action="cancel", via="api", actor_label="alice", target_type="job", target_id="1234"
    )

    listing = client.get(reverse("admin:jobs_auditevent_changelist"))
    assert listing.status_code == 200
    assert b"alice" in listing.content and b"1234" in listing.content
    assert client.get(reverse("admin:jobs_auditevent_add")).status_code == 403
    detail = client.get(reverse("admin:jobs_auditevent_change", args=[event.pk]))
    assert detail.status_code == 200 and b'name="actor_label"' not in detail.content  # read-only
    client.post(reverse("admin:jobs_auditevent_delete", args=[event.pk]), {"post": "yes"})
    assert AuditEvent.objects.filter(pk=event.pk).exists()
