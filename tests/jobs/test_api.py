"""The job API: authentication, ownership, validation, idempotency and the answers' shape."""

from __future__ import annotations

import uuid

import pytest
from rest_framework.test import APIClient

from jobs.dispatch.services import build_job, create_jobs
from jobs.models import Job, JobStatus

pytestmark = pytest.mark.django_db


def _job_for(owner, status=JobStatus.QUEUED, **fields):
    job = build_job(job_type="canary", queue="maintenance", actor="canary_maintenance", arguments={}, owner=owner)
    job.status = status
    for key, value in fields.items():
        setattr(job, key, value)
    return create_jobs([job])[0]


CANARY = {"queue": "maintenance", "seconds": 0, "steps": 1}


def test_anonymous_requests_are_refused(api):
    assert api.get("/api/jobs").status_code in (401, 403)
    assert api.post("/api/jobs/canary", CANARY, format="json").status_code in (401, 403)


def test_token_endpoint_returns_a_token_that_authenticates(api, user):
    response = api.post("/api/auth/token", {"username": user.username, "password": "secret-pass-123"})
    assert response.status_code == 200
    token = response.json()["token"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/jobs").status_code == 200


def test_token_endpoint_rejects_a_wrong_password_with_json(api, user):
    response = api.post("/api/auth/token", {"username": user.username, "password": "wrong"})
    assert response.status_code == 400
    assert "errors" in response.json()


def test_create_token_command_prints_a_token_that_signs_the_user_in(user):
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("create_token", user.username, stdout=out, stderr=StringIO())
    token = out.getvalue().strip()

    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/jobs").status_code == 200
    # Only its digest is stored.
    [stored] = user.auth_token_set.all()
    assert token not in (stored.digest, stored.token_key)
    assert stored.expiry is not None


def test_posting_a_job_answers_202_with_its_id_and_estimate(staff_api):
    response = staff_api.post("/api/jobs/canary", {**CANARY, "seconds": 240}, format="json")
    assert response.status_code == 202
    body = response.json()
    job = Job.objects.get(id=body["job_id"])
    assert job.status == JobStatus.QUEUED
    assert body["status_url"].endswith(f"/api/jobs/{job.id}/status")
    assert body["estimated_duration_s"] > 0
    assert body["estimated_duration"].endswith(("seconds", "minutes"))
    assert body["created"] is True


def test_unknown_job_type_answers_404_naming_it(staff_api):
    response = staff_api.post("/api/jobs/no-such-type", {}, format="json")
    assert response.status_code == 404
    assert "no-such-type" in response.json()["detail"]


def test_staff_only_type_is_refused_to_a_user(user_api):
    response = user_api.post("/api/jobs/canary", CANARY, format="json")
    assert response.status_code == 403
    assert "staff" in response.json()["detail"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"queue": "nope"}, "queue"),
        ({"queue": "maintenance", "seconds": -1}, "seconds"),
        ({"queue": "maintenance", "steps": "many"}, "steps"),
        ({"queue": "maintenance", "fail": "sometimes"}, "fail"),
        ({"queue": "maintenance", "priority": "urgent"}, "priority"),
        ({}, "queue"),
    ],
)
def test_bad_payload_answers_400_naming_the_field(staff_api, payload, field):
    response = staff_api.post("/api/jobs/canary", payload, format="json")
    assert response.status_code == 400
    body = response.json()
    assert field in body["errors"]
    assert field in body["detail"]


def test_a_body_that_is_not_an_object_answers_400(staff_api):
    response = staff_api.post("/api/jobs/canary", [1, 2], format="json")
    assert response.status_code == 400
    response = staff_api.post("/api/jobs/canary", "{not json", content_type="application/json")
    assert response.status_code == 400


def test_same_idempotency_key_returns_the_same_job(staff_api):
    first = staff_api.post("/api/jobs/canary", CANARY, format="json", HTTP_IDEMPOTENCY_KEY="click-1")
    second = staff_api.post("/api/jobs/canary", CANARY, format="json", HTTP_IDEMPOTENCY_KEY="click-1")
    third = staff_api.post("/api/jobs/canary", CANARY, format="json", HTTP_IDEMPOTENCY_KEY="click-2")
    assert first.json()["job_id"] == second.json()["job_id"] != third.json()["job_id"]
    assert second.json()["created"] is False
    assert Job.objects.count() == 2


def test_idempotency_keys_are_per_user(staff, db):
    from tests.factories import UserFactory

    other_staff = UserFactory(is_staff=True)
    clients = []
    for person in (staff, other_staff):
        client = APIClient()
        client.force_authenticate(person)
        clients.append(client)
    ids = {
        c.post("/api/jobs/canary", CANARY, format="json", HTTP_IDEMPOTENCY_KEY="k").json()["job_id"] for c in clients
    }
    assert len(ids) == 2


def test_status_has_the_documented_shape(user_api, user):
    job = _job_for(user)
    body = user_api.get(f"/api/jobs/{job.id}/status").json()
    for key in (
        "id",
        "type",
        "queue",
        "status",
        "progress",
        "data",
        "created_at",
        "started_at",
        "finished_at",
        "estimated_completion",
        "attempts",
        "error",
    ):
        assert key in body
    assert body["created_at"].endswith("Z")


def test_another_users_job_answers_404(user_api, other_user):
    job = _job_for(other_user)
    assert user_api.get(f"/api/jobs/{job.id}/status").status_code == 404
    assert user_api.post(f"/api/jobs/{job.id}/cancel").status_code == 404
    assert user_api.post(f"/api/jobs/{job.id}/retry").status_code == 404


def test_staff_see_every_job(staff_api, user, other_user):
    _job_for(user)
    _job_for(other_user)
    assert staff_api.get("/api/jobs").json()["count"] == 2


def test_list_shows_only_own_jobs_and_filters(user_api, user, other_user):
    _job_for(user, status=JobStatus.FAILED)
    _job_for(user)
    _job_for(other_user)
    assert user_api.get("/api/jobs").json()["count"] == 2
    assert user_api.get("/api/jobs", {"status": "failed"}).json()["count"] == 1
    assert user_api.get("/api/jobs", {"status": "weird"}).status_code == 400


def test_unknown_job_id_answers_404(user_api):
    assert user_api.get(f"/api/jobs/{uuid.uuid4()}/status").status_code == 404
    assert user_api.get("/api/jobs/not-a-uuid/status").status_code == 404


def test_cancel_of_a_queued_job_cancels_it(user_api, user):
    job = _job_for(user)
    response = user_api.post(f"/api/jobs/{job.id}/cancel")
    assert response.status_code == 202
    assert response.json()["status"] == JobStatus.CANCELLED


def test_cancel_of_a_finished_job_answers_409(user_api, user):
    job = _job_for(user, status=JobStatus.COMPLETED)
    assert user_api.post(f"/api/jobs/{job.id}/cancel").status_code == 409


def test_retry_of_a_failed_job_queues_it_again(user_api, user):
    job = _job_for(user, status=JobStatus.FAILED, attempts=3, error_message="boom")
    response = user_api.post(f"/api/jobs/{job.id}/retry")
    assert response.status_code == 202
    job.refresh_from_db()
    assert job.status == JobStatus.QUEUED and job.error_message == "" and job.max_attempts > job.attempts


def test_retry_of_a_running_job_answers_409(user_api, user):
    job = _job_for(user, status=JobStatus.ACTIVE)
    assert user_api.post(f"/api/jobs/{job.id}/retry").status_code == 409


def test_schema_and_docs_are_served(staff_api):
    assert staff_api.get("/api/schema/").status_code == 200
    assert staff_api.get("/api/docs/").status_code == 200


# -- recording outside and inside a caller's transaction --------------------------------------
VALIDATED_CANARY = {"queue": "maintenance", "seconds": 0, "steps": 1, "fail": False, "priority": "normal"}


def _waiting_message_ids(queue_name: str) -> list[str]:
    import dramatiq

    from jobs.worker.broker import ConveyorRedisBroker

    broker = dramatiq.get_broker()
    assert isinstance(broker, ConveyorRedisBroker)
    keys = broker.client.hkeys(broker.messages_key(queue_name))
    return [(key.decode() if isinstance(key, bytes) else str(key)).split(".")[0] for key in keys]


def test_a_job_started_outside_a_transaction_is_saved_and_sent(transactional_db, clean_redis, staff):
    # Given a job type whose plan only validates (the canary's): its row is one INSERT in autocommit
    from jobs.dispatch.registry import get_job_type
    from jobs.dispatch.services import start_job

    # When it is started with no transaction around it
    outcome = start_job(get_job_type("canary"), staff, VALIDATED_CANARY)

    # Then the row is committed (another connection sees it) and its message waits in Redis
    from django.db import connections

    assert outcome.created
    # The id as the database stores it (SQLite has no UUID type).
    stored_id = Job._meta.pk.get_db_prep_value(outcome.job.id, connections["default"])
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT status FROM jobs_job WHERE id = %s", [stored_id])
        assert cursor.fetchone() == (JobStatus.QUEUED,)
    assert _waiting_message_ids("maintenance") == [str(outcome.job.id)]


def test_a_job_started_in_a_transaction_that_rolls_back_is_neither_saved_nor_sent(transactional_db, clean_redis, staff):
    from django.db import transaction

    from jobs.dispatch.registry import get_job_type
    from jobs.dispatch.services import start_job

    # When the caller's transaction fails after starting a job
    with pytest.raises(RuntimeError), transaction.atomic():
        start_job(get_job_type("canary"), staff, VALIDATED_CANARY)
        raise RuntimeError("the caller's own work failed")

    # Then the job never existed
    assert not Job.objects.exists()
    assert _waiting_message_ids("maintenance") == []
