"""Backpressure: a customer's job request is refused while too much of that work waits.

429 when the owner has too many waiting jobs of the type, 503 when a deferrable
type's queue is at its backlog ceiling; never for staff, the system, children,
an accepted request's own work, or a replay. Backlogs are real messages in Redis.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import dramatiq
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from documents.models import Document
from jobs.core.origin import Origin
from jobs.dispatch import registry, services
from jobs.dispatch.registry import get_job_type
from jobs.models import Job, JobStatus
from tests.documents import pdfs
from tests.factories import DocumentFactory
from tests.jobs.helpers import reload
from tests.workers import wait_for

pytestmark = pytest.mark.django_db

#: A customer-startable test type; its plan puts the job on the queue the payload names.
RECORD_RUN = "test-record-run"


@pytest.fixture
def media_root(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def undeferrable_type(monkeypatch: pytest.MonkeyPatch) -> str:
    """The record-run test type again under another name, declared not deferrable (for this test only)."""
    kind = dataclasses.replace(get_job_type(RECORD_RUN), name="test-record-run-now", deferrable=False)
    monkeypatch.setitem(registry._registry, kind.name, kind)
    return kind.name


def _post(client: Any, job_type: str = RECORD_RUN, queue: str = "maintenance", **headers: Any) -> Any:
    return client.post(f"/api/jobs/{job_type}", {"queue": queue}, format="json", **headers)


def _waiting_system_jobs(queue: str, count: int, capture: Any) -> None:
    """``count`` jobs nobody asked for, sent to ``queue`` in Redis (no worker takes them)."""
    jobs = [
        services.build_job(job_type=RECORD_RUN, queue=queue, actor=f"test_record_run_{queue}", arguments={})
        for _ in range(count)
    ]
    with capture(execute=True):
        services.create_jobs(jobs)
    assert dramatiq.get_broker().queue_depth(queue) == count  # type: ignore[attr-defined]


# -- per owner: 429 ------------------------------------------------------------------
def test_a_customer_over_the_waiting_limit_gets_429_naming_the_limit(user_api, settings):
    settings.JOBS_MAX_WAITING_PER_OWNER = 2
    assert _post(user_api).status_code == 202
    assert _post(user_api).status_code == 202

    response = _post(user_api)

    assert response.status_code == 429
    assert int(response["Retry-After"]) == settings.JOBS_BACKPRESSURE_RETRY_AFTER_S
    body = response.json()
    assert body["limit"] == "JOBS_MAX_WAITING_PER_OWNER"
    assert (body["max_waiting"], body["waiting"], body["job_type"]) == (2, 2, RECORD_RUN)
    assert "2 test-record-run jobs waiting" in body["detail"]
    assert Job.objects.filter(type=RECORD_RUN).count() == 2


def test_a_per_type_limit_overrides_the_default_for_that_type_only(user_api, settings):
    settings.JOBS_MAX_WAITING_PER_OWNER = 100
    settings.JOBS_MAX_WAITING_PER_OWNER_TEST_RECORD_RUN = 1
    assert _post(user_api).status_code == 202

    refused = _post(user_api)
    other_type = _post(user_api, "test-sleep-subprocess")

    assert refused.status_code == 429
    assert refused.json()["limit"] == "JOBS_MAX_WAITING_PER_OWNER_TEST_RECORD_RUN"
    assert other_type.status_code == 202


def test_finished_jobs_and_other_owners_jobs_do_not_count(user_api, user, other_user, settings):
    settings.JOBS_MAX_WAITING_PER_OWNER = 1
    first = Job.objects.get(id=_post(user_api).json()["job_id"])
    Job.objects.filter(id=first.id).update(status=JobStatus.COMPLETED)
    for _ in range(3):
        services.create_jobs(
            [services.build_job(job_type=RECORD_RUN, queue="maintenance", actor="x", arguments={}, owner=other_user)]
        )

    assert _post(user_api).status_code == 202


def test_a_replayed_request_is_answered_not_refused(user_api, settings):
    settings.JOBS_MAX_WAITING_PER_OWNER = 1
    first = _post(user_api, HTTP_IDEMPOTENCY_KEY="click-1")

    replay = _post(user_api, HTTP_IDEMPOTENCY_KEY="click-1")
    new_request = _post(user_api, HTTP_IDEMPOTENCY_KEY="click-2")

    assert replay.status_code == 202
    assert replay.json()["job_id"] == first.json()["job_id"] and replay.json()["created"] is False
    assert new_request.status_code == 429


def test_asking_again_for_running_ocr_is_answered_with_that_job(user_api, user, settings, media_root):
    settings.JOBS_MAX_WAITING_PER_OWNER_PDF_OCR = 1
    document, other = (DocumentFactory(owner=user, file__data=pdfs.text_pdf_bytes(["words"])) for _ in range(2))
    first = user_api.post("/api/jobs/pdf-ocr", {"file_id": str(document.id)}, format="json")

    again = user_api.post("/api/jobs/pdf-ocr", {"file_id": str(document.id)}, format="json")
    another = user_api.post("/api/jobs/pdf-ocr", {"file_id": str(other.id)}, format="json")

    assert again.status_code == 202 and again.json()["job_id"] == first.json()["job_id"]
    assert another.status_code == 429
    # The refused plan's write (linking the document to its job) was rolled back with it.
    assert reload(other).ocr_job_id is None


# -- per queue: 503 ------------------------------------------------------------------
def test_a_deferrable_type_gets_503_while_its_queue_is_at_the_ceiling(
    user_api, settings, clean_redis, django_capture_on_commit_callbacks
):
    settings.QUEUE_THUMBNAILS_MAX_BACKLOG = 3
    _waiting_system_jobs("thumbnails", 3, django_capture_on_commit_callbacks)

    response = _post(user_api, queue="thumbnails")
    elsewhere = _post(user_api, queue="maintenance")

    assert response.status_code == 503
    assert int(response["Retry-After"]) == settings.JOBS_BACKPRESSURE_RETRY_AFTER_S
    body = response.json()
    assert body["limit"] == "QUEUE_THUMBNAILS_MAX_BACKLOG"
    assert (body["queue"], body["max_backlog"], body["backlog"], body["job_type"]) == ("thumbnails", 3, 3, RECORD_RUN)
    assert elsewhere.status_code == 202


def test_below_the_ceiling_a_deferrable_type_is_accepted(
    user_api, settings, clean_redis, django_capture_on_commit_callbacks
):
    settings.QUEUE_THUMBNAILS_MAX_BACKLOG = 3
    _waiting_system_jobs("thumbnails", 2, django_capture_on_commit_callbacks)

    assert _post(user_api, queue="thumbnails").status_code == 202


def test_a_ceiling_of_zero_is_no_ceiling(user_api, settings, clean_redis, django_capture_on_commit_callbacks):
    settings.QUEUE_THUMBNAILS_MAX_BACKLOG = 0
    _waiting_system_jobs("thumbnails", 2, django_capture_on_commit_callbacks)

    assert _post(user_api, queue="thumbnails").status_code == 202


def test_a_type_that_cannot_wait_is_not_refused_by_the_ceiling(
    user_api, settings, clean_redis, django_capture_on_commit_callbacks, undeferrable_type
):
    settings.QUEUE_THUMBNAILS_MAX_BACKLOG = 1
    _waiting_system_jobs("thumbnails", 2, django_capture_on_commit_callbacks)

    assert _post(user_api, undeferrable_type, queue="thumbnails").status_code == 202


def test_the_registered_types_that_cannot_wait():
    deferrable = {name: kind.deferrable for name, kind in registry.job_types().items()}
    assert {name for name in ("canary", "email-batch", "email-digest") if not deferrable[name]} == {
        "canary",
        "email-batch",
        "email-digest",
    }
    assert deferrable["pdf-ocr"] and deferrable["thumbnails"] and deferrable["csv-export"]


# -- never refused ---------------------------------------------------------------------
def test_staff_are_refused_by_neither_limit(staff_api, settings, clean_redis, django_capture_on_commit_callbacks):
    settings.JOBS_MAX_WAITING_PER_OWNER = 1
    settings.QUEUE_THUMBNAILS_MAX_BACKLOG = 1
    _waiting_system_jobs("thumbnails", 1, django_capture_on_commit_callbacks)

    responses = [_post(staff_api, queue="thumbnails") for _ in range(3)]

    assert [response.status_code for response in responses] == [202, 202, 202]


def test_system_and_scheduled_jobs_are_refused_by_neither_limit(
    user, settings, clean_redis, django_capture_on_commit_callbacks
):
    settings.JOBS_MAX_WAITING_PER_OWNER = 1
    settings.QUEUE_THUMBNAILS_MAX_BACKLOG = 1
    _waiting_system_jobs("thumbnails", 1, django_capture_on_commit_callbacks)
    kind = get_job_type(RECORD_RUN)
    payload = {"queue": "thumbnails", "seconds": 0, "priority": "normal"}

    started = [
        services.start_job(kind, None, payload),
        services.start_job(kind, None, payload, origin=Origin.schedule("nightly")),
        # A user's job started by code (a domain service, a command), not by the user's request.
        services.start_job(kind, user, payload),
        services.start_job(kind, user, payload),
    ]

    assert all(outcome.created for outcome in started)


def test_an_uploads_own_thumbnails_are_never_refused(
    user_api, user, settings, clean_redis, django_capture_on_commit_callbacks, media_root
):
    settings.JOBS_MAX_WAITING_PER_OWNER = 1
    settings.QUEUE_THUMBNAILS_MAX_BACKLOG = 1
    _waiting_system_jobs("thumbnails", 1, django_capture_on_commit_callbacks)
    services.create_jobs(
        [services.build_job(job_type="thumbnails", queue="thumbnails", actor="x", arguments={}, owner=user)]
    )

    response = user_api.post(
        "/api/documents", {"file": SimpleUploadedFile("a.pdf", pdfs.text_pdf_bytes(["words"]))}, format="multipart"
    )

    assert response.status_code == 201, response.content
    document = Document.objects.get(id=response.json()["id"])
    assert Job.objects.filter(type="thumbnails", owner=user, arguments__document_ids=[str(document.id)]).exists()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_children_of_an_accepted_request_are_never_refused(user_api, user, pools, settings):
    # Given limits the children alone exceed, in this process and in the worker that fans out
    limits = {"JOBS_MAX_WAITING_PER_OWNER": "1", "QUEUE_THUMBNAILS_MAX_BACKLOG": "2"}
    for name, value in limits.items():
        setattr(settings, name, int(value))
    pools("maintenance", threads=1, env=limits)
    # When a customer's accepted request fans out into four children on the thumbnails queue (no worker there)
    response = user_api.post("/api/jobs/test-fanout", {"children": 4}, format="json")
    assert response.status_code == 202
    parent = Job.objects.get(id=response.json()["job_id"])
    wait_for(lambda: reload(parent).progress_data.get("total") == 4, what="the fan-out")
    # Then every child waits in Redis, owned by the customer, past both limits
    children = Job.objects.filter(parent=parent)
    assert children.count() == 4
    assert set(children.values_list("owner", flat=True)) == {user.pk}
    # (their messages are sent once the fan-out's transaction has committed, a moment after the rows)
    broker: Any = dramatiq.get_broker()
    wait_for(lambda: broker.queue_depth("thumbnails") == 4, what="the children's messages in Redis")
    # ... and they count: the customer's next request of their type is over the owner's limit,
    # and a deferrable request of another type meets the queue's real backlog.
    assert _post(user_api, queue="maintenance").status_code == 429
    assert _post(user_api, "test-sleep-subprocess", queue="thumbnails").status_code == 503
