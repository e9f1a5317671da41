"""Who gets what: anonymous, user A, user B and staff against every API endpoint and every admin page.

The rows touched belong to user A. Each expectation is written out; the
endpoint lists are read from the OpenAPI schema, the URL resolver and the admin
registry, so a new endpoint, job type or admin model fails the coverage tests
until its expectation is added here.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import partial
from typing import Any, cast

import pytest
from django.conf import settings
from django.contrib import admin
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.test import Client, RequestFactory
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from campaigns.models import Audience, Campaign, Delivery
from documents.models import Document, DocumentStatus, PageStatus
from exports.models import Export, ExportStatus
from jobs.dispatch.registry import job_types
from tests.documents.pdfs import text_pdf_bytes
from tests.factories import UserFactory
from tests.proof.conftest import World

ROLES = ["anonymous", "user_a", "user_b", "staff"]

# (method, schema path) -> the status each role gets on user A's rows.
API_EXPECTATIONS: dict[tuple[str, str], dict[str, int]] = {
    ("POST", "/api/auth/token"): {"anonymous": 200, "user_a": 200, "user_b": 200, "staff": 200},
    # Each revokes the caller's own tokens: nothing of user A's is reachable through them.
    ("POST", "/api/auth/logout"): {"anonymous": 401, "user_a": 204, "user_b": 204, "staff": 204},
    ("POST", "/api/auth/logout-all"): {"anonymous": 401, "user_a": 204, "user_b": 204, "staff": 204},
    ("POST", "/api/auth/ws-ticket"): {"anonymous": 401, "user_a": 200, "user_b": 200, "staff": 200},
    ("GET", "/api/jobs"): {"anonymous": 401, "user_a": 200, "user_b": 200, "staff": 200},
    ("GET", "/api/jobs/{id}"): {"anonymous": 401, "user_a": 200, "user_b": 404, "staff": 200},
    ("GET", "/api/jobs/{id}/status"): {"anonymous": 401, "user_a": 200, "user_b": 404, "staff": 200},
    ("POST", "/api/jobs/{id}/cancel"): {"anonymous": 401, "user_a": 202, "user_b": 404, "staff": 202},
    ("POST", "/api/jobs/{id}/retry"): {"anonymous": 401, "user_a": 202, "user_b": 404, "staff": 202},
    # Per job type: see JOB_TYPE_EXPECTATIONS.
    ("POST", "/api/jobs/{job_type}"): {},
    ("GET", "/api/documents"): {"anonymous": 401, "user_a": 200, "user_b": 200, "staff": 200},
    ("POST", "/api/documents"): {"anonymous": 401, "user_a": 201, "user_b": 201, "staff": 201},
    ("GET", "/api/documents/{id}"): {"anonymous": 401, "user_a": 200, "user_b": 404, "staff": 200},
    ("GET", "/api/documents/{id}/pages"): {"anonymous": 401, "user_a": 200, "user_b": 404, "staff": 200},
    ("GET", "/api/documents/{id}/text"): {"anonymous": 401, "user_a": 200, "user_b": 404, "staff": 200},
    ("GET", "/api/documents/{id}/file"): {"anonymous": 401, "user_a": 200, "user_b": 404, "staff": 200},
    ("GET", "/api/documents/{id}/thumbnails/{size}"): {"anonymous": 401, "user_a": 200, "user_b": 404, "staff": 200},
    ("GET", "/api/exports"): {"anonymous": 401, "user_a": 200, "user_b": 200, "staff": 200},
    ("GET", "/api/exports/{id}"): {"anonymous": 401, "user_a": 200, "user_b": 404, "staff": 200},
    ("GET", "/api/exports/{id}/download"): {"anonymous": 401, "user_a": 200, "user_b": 404, "staff": 200},
    # Email templates are staff-only, whoever created them.
    ("GET", "/api/email-templates"): {"anonymous": 401, "user_a": 403, "user_b": 403, "staff": 200},
    ("POST", "/api/email-templates"): {"anonymous": 401, "user_a": 403, "user_b": 403, "staff": 201},
    ("GET", "/api/email-templates/{id}"): {"anonymous": 401, "user_a": 403, "user_b": 403, "staff": 200},
    ("PUT", "/api/email-templates/{id}"): {"anonymous": 401, "user_a": 403, "user_b": 403, "staff": 200},
    ("PATCH", "/api/email-templates/{id}"): {"anonymous": 401, "user_a": 403, "user_b": 403, "staff": 200},
}

# Job type -> the status of ``POST /api/jobs/<type>`` with a valid payload about user A's rows.
JOB_TYPE_EXPECTATIONS: dict[str, dict[str, int]] = {
    "canary": {"anonymous": 401, "user_a": 403, "user_b": 403, "staff": 202},
    "pdf-ocr": {"anonymous": 401, "user_a": 202, "user_b": 404, "staff": 202},
    "thumbnails": {"anonymous": 401, "user_a": 202, "user_b": 404, "staff": 202},
    "csv-export": {"anonymous": 401, "user_a": 202, "user_b": 202, "staff": 202},
    "weekly-job-metrics": {"anonymous": 401, "user_a": 403, "user_b": 403, "staff": 202},
    "expire-exports": {"anonymous": 401, "user_a": 403, "user_b": 403, "staff": 202},
    "email-batch": {"anonymous": 401, "user_a": 403, "user_b": 403, "staff": 202},
    "email-digest": {"anonymous": 401, "user_a": 403, "user_b": 403, "staff": 202},
    "cleanup": {"anonymous": 401, "user_a": 403, "user_b": 403, "staff": 202},
    "thumbnail-maintenance": {"anonymous": 401, "user_a": 403, "user_b": 403, "staff": 202},
    "weekly-report": {"anonymous": 401, "user_a": 403, "user_b": 403, "staff": 202},
}
# Registered by the test settings' tests.testapp only; never served in production.
TEST_ONLY_JOB_TYPES = {"test-sleep-subprocess", "test-sleep-child-c", "test-record-run", "test-fanout"}

# API routes outside the schema: public by design.
PUBLIC_API_ROUTES = {"/api/schema/": 200, "/api/docs/": 200, "/api/redoc/": 200}

SECRET_MARKERS = ("password", "secret", "token", "://")


def _client(world: World, role: str) -> APIClient:
    client = APIClient()
    if role == "staff":
        client.credentials(HTTP_AUTHORIZATION=f"Token {world.staff_token}")
    elif role != "anonymous":
        client.credentials(HTTP_AUTHORIZATION=f"Token {getattr(world, role).token}")
    return client


def _user(world: World, role: str) -> Any:
    return {"anonymous": None, "user_a": world.user_a.user, "user_b": world.user_b.user, "staff": world.staff}[role]


def _ready_rows(world: World) -> None:
    """User A's document has text and a 64 px thumbnail; user A's export has its file."""
    a = world.user_a
    a.document.status = DocumentStatus.READY
    a.document.save(update_fields=["status"])
    a.document.pages.create(number=1, status=PageStatus.DONE, text="hello")
    thumbnail = default_storage.save(f"thumbnails/{a.document.id.hex}/64.png", ContentFile(b"\x89PNG\r\n\x1a\n"))
    Document.record_thumbnails(str(a.document.id), {64: thumbnail})
    path = settings.MEDIA_ROOT / "exports" / f"{a.export.id}.csv"
    path.parent.mkdir(parents=True)
    path.write_text("id\n1\n")
    Export.objects.filter(id=a.export.id).update(
        status=ExportStatus.COMPLETED, file=f"exports/{a.export.id}.csv", row_count=1, size_bytes=5
    )


def _api_call(world: World, method: str, path: str) -> tuple[str, dict[str, Any], str | None]:
    """The concrete URL, body and body format of one call about user A's rows."""
    a = world.user_a
    template = world.template
    concrete = (
        path.replace("{size}", "64")
        .replace("/api/jobs/{id}/retry", f"/api/jobs/{a.failed_job.id}/retry")
        .replace("/api/jobs/{id}", f"/api/jobs/{a.queued_job.id}")
        .replace("/api/documents/{id}", f"/api/documents/{a.document.id}")
        .replace("/api/exports/{id}", f"/api/exports/{a.export.id}")
        .replace("/api/email-templates/{id}", f"/api/email-templates/{template.id}")
    )
    template_body = {"name": "news", "subject": "Hi {{ user.username }}", "body_text": "Hello", "body_html": ""}
    bodies: dict[tuple[str, str], tuple[dict[str, Any], str | None]] = {
        ("POST", "/api/auth/token"): ({"username": a.user.username, "password": "secret-pass-123"}, "json"),
        ("POST", "/api/auth/logout"): ({}, "json"),
        ("POST", "/api/auth/logout-all"): ({}, "json"),
        ("POST", "/api/auth/ws-ticket"): ({}, "json"),
        ("POST", "/api/documents"): ({"file": _pdf_upload()}, "multipart"),
        ("POST", "/api/email-templates"): (template_body, "json"),
        ("PUT", "/api/email-templates/{id}"): (template_body, "json"),
        ("PATCH", "/api/email-templates/{id}"): ({"subject": "Hello again"}, "json"),
    }
    body, body_format = bodies.get((method, path), ({}, None))
    return concrete, body, body_format


def _pdf_upload() -> Any:
    from django.core.files.uploadedfile import SimpleUploadedFile

    return SimpleUploadedFile("one.pdf", text_pdf_bytes(["one page"]), content_type="application/pdf")


def _job_payload(world: World, job_type: str) -> dict[str, Any]:
    a = world.user_a
    payloads: dict[str, dict[str, Any]] = {
        "canary": {"queue": "maintenance"},
        "pdf-ocr": {"file_id": str(a.document.id)},
        "thumbnails": {"document_ids": [str(a.document.id)], "sizes": [64]},
        "csv-export": {"query_params": {"dataset": "jobs"}},
        "weekly-job-metrics": {},
        "expire-exports": {},
        "email-batch": {"user_ids": [a.user.id], "template_id": world.template.id},
        "email-digest": {},
        "cleanup": {},
        "thumbnail-maintenance": {},
        "weekly-report": {},
    }
    return payloads[job_type]


def _schema_operations() -> set[tuple[str, str]]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return {(method.upper(), path) for path, item in schema["paths"].items() for method in item}


def _route_template(prefix: str, pattern: Any) -> str:
    raw = str(pattern).lstrip("^").rstrip("$")
    raw = re.sub(r"\(\?P<(\w+)>[^)]*\)", r"{\1}", raw)
    raw = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", raw)
    return (prefix + raw).replace("{pk}", "{id}")


def _resolver_routes(patterns: list[Any], prefix: str = "/") -> set[str]:
    routes: set[str] = set()
    for entry in patterns:
        if isinstance(entry, URLResolver):
            routes |= _resolver_routes(entry.url_patterns, _route_template(prefix, entry.pattern))
        elif isinstance(entry, URLPattern):
            routes.add(_route_template(prefix, entry.pattern))
    return routes


# -- coverage: every endpoint has an expectation -------------------------------


def test_every_schema_operation_has_an_expectation_for_every_role() -> None:
    # Given the operations the OpenAPI schema publishes
    operations = _schema_operations()
    # Then each has an expectation here, and nothing here is stale
    assert operations == set(API_EXPECTATIONS)
    assert all(set(roles) == set(ROLES) for key, roles in API_EXPECTATIONS.items() if roles)


def test_every_api_route_is_in_the_schema_or_public_by_design() -> None:
    # Given every route under /api/ that the URL resolver serves
    routes = {route for route in _resolver_routes(get_resolver().url_patterns) if route.startswith("/api/")}
    # Then each is a schema path or one of the public schema/docs pages
    schema_paths = {path for _, path in API_EXPECTATIONS}
    assert routes == schema_paths | set(PUBLIC_API_ROUTES)


def test_every_served_job_type_has_an_expectation() -> None:
    # Internal types (a fan-out's children) have no serializer: the API never starts them.
    served = {name for name, kind in job_types().items() if kind.serializer is not None} - TEST_ONLY_JOB_TYPES
    assert served == set(JOB_TYPE_EXPECTATIONS)


# -- the API matrix ------------------------------------------------------------

API_CASES = [
    pytest.param(method, path, role, id=f"{role}-{method}-{path}")
    for (method, path), roles in API_EXPECTATIONS.items()
    for role in roles
]


@pytest.mark.parametrize(("method", "path", "role"), API_CASES)
def test_api_endpoint_answers_each_role_as_expected(world: World, method: str, path: str, role: str) -> None:
    # Given user A's rows, ready to be read
    _ready_rows(world)
    url, body, body_format = _api_call(world, method, path)
    # When the role calls the endpoint
    response = getattr(_client(world, role), method.lower())(url, body, format=body_format)
    # Then it gets exactly the expected status
    assert response.status_code == API_EXPECTATIONS[(method, path)][role], response.content[:500]


JOB_TYPE_CASES = [
    pytest.param(job_type, role, id=f"{role}-{job_type}")
    for job_type, roles in JOB_TYPE_EXPECTATIONS.items()
    for role in roles
]


@pytest.mark.parametrize(("job_type", "role"), JOB_TYPE_CASES)
def test_starting_a_job_answers_each_role_as_expected(world: World, job_type: str, role: str) -> None:
    # Given a valid payload about user A's rows
    payload = _job_payload(world, job_type)
    # When the role asks for the job
    response = _client(world, role).post(f"/api/jobs/{job_type}", payload, format="json")
    # Then it gets exactly the expected status
    assert response.status_code == JOB_TYPE_EXPECTATIONS[job_type][role], response.content[:500]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("path", sorted(PUBLIC_API_ROUTES))
def test_schema_and_docs_are_public(world: World, path: str, role: str) -> None:
    response = _client(world, role).get(path)
    assert response.status_code == PUBLIC_API_ROUTES[path]


@pytest.mark.parametrize(
    ("list_path", "rows"),
    [
        ("/api/jobs", lambda h: {str(h.queued_job.id), str(h.failed_job.id)}),
        ("/api/documents", lambda h: {str(h.document.id)}),
        ("/api/exports", lambda h: {str(h.export.id)}),
    ],
)
def test_lists_show_a_user_only_their_own_rows_and_staff_all_rows(
    world: World, list_path: str, rows: Callable[[Any], set[str]]
) -> None:
    # Given rows of user A and of user B
    def listed(role: str) -> set[str]:
        response = _client(world, role).get(list_path)
        assert response.status_code == 200
        return {str(item["id"]) for item in response.json()["results"]}

    mine, theirs = rows(world.user_a), rows(world.user_b)
    # Then each user lists exactly their own rows, and staff lists both
    assert listed("user_a") == mine
    assert listed("user_b") == theirs
    assert listed("staff") >= mine | theirs


def test_another_users_object_answers_exactly_like_a_missing_one(world: World) -> None:
    # Given user B asks for user A's job and for a job id that does not exist
    client = _client(world, "user_b")
    hidden = client.get(f"/api/jobs/{world.user_a.queued_job.id}")
    missing = client.get("/api/jobs/00000000-0000-0000-0000-000000000000")
    # Then both answers are the same 404, so the id's existence does not leak
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json().keys() == missing.json().keys()


@pytest.mark.parametrize("action", ["cancel", "retry"])
def test_another_users_cancel_or_retry_leaves_the_job_untouched(world: World, action: str) -> None:
    # Given user A's queued and failed jobs
    a = world.user_a
    before = {job.id: (job.status, job.updated_at) for job in (a.queued_job, a.failed_job)}
    target = a.queued_job if action == "cancel" else a.failed_job
    # When user B tries to cancel or retry one of them
    response = _client(world, "user_b").post(f"/api/jobs/{target.id}/{action}")
    # Then B gets 404 and A's jobs have not moved
    assert response.status_code == 404
    for job in (a.queued_job, a.failed_job):
        job.refresh_from_db()
        assert (job.status, job.updated_at) == before[job.id]


# -- /workers/health -----------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_workers_health_is_public_and_carries_no_secrets(world: World, role: str) -> None:
    # When anyone asks for the workers' health
    response = _client(world, role).get("/workers/health")
    # Then it answers (503 here: no worker runs) with a report that names no secret
    assert response.status_code in (200, 503)
    text = json.dumps(response.json()).lower()
    database = settings.DATABASES["default"]
    for secret in (settings.SECRET_KEY, settings.REDIS_URL, database.get("PASSWORD"), database.get("HOST")):
        if secret:
            assert str(secret).lower() not in text
    for marker in SECRET_MARKERS:
        assert marker not in text


# -- admin pages ---------------------------------------------------------------


def _draft_campaign(world: World) -> Campaign:
    campaign = Campaign.objects.filter(name="proof draft").first()
    return campaign or Campaign.objects.create(name="proof draft", template=world.template, audience=Audience.SELECTED)


def _admin_rows(world: World) -> dict[type, Any]:
    """One row of every model registered in the admin (a new registration fails until it has one here)."""
    from axes.models import AccessAttempt, AccessFailureLog, AccessLog
    from django.contrib.auth.models import Group
    from django.utils import timezone
    from knox.models import AuthToken

    from jobs.models import Job
    from jobs.models.alert import Alert
    from jobs.models.audit import AuditEvent
    from jobs.models.schedule import Schedule, ScheduleFire
    from jobs.models.share import ShareWeight

    campaign = _draft_campaign(world)
    schedule = Schedule.objects.create(name="proof", interval_seconds=60, job_type="cleanup")
    rows: dict[type, Any] = {
        Job: world.user_a.queued_job,
        Export: world.user_a.export,
        type(world.template): world.template,
        Campaign: campaign,
        Delivery: Delivery.objects.create(campaign=campaign, user=world.user_a.user, email="a@example.com"),
        type(world.user_a.document): world.user_a.document,
        type(world.user_a.user): world.user_a.user,
        Group: Group.objects.create(name="proof"),
        AuthToken: AuthToken.objects.filter(user=world.user_a.user).first(),
        AccessAttempt: AccessAttempt.objects.create(
            username="proof", ip_address="192.0.2.1", user_agent="", get_data="", post_data="", failures_since_start=1
        ),
        AccessLog: AccessLog.objects.create(username="proof", ip_address="192.0.2.1", user_agent=""),
        AccessFailureLog: AccessFailureLog.objects.create(
            username="proof", ip_address="192.0.2.1", user_agent="", locked_out=False
        ),
        Schedule: schedule,
        ScheduleFire: ScheduleFire.objects.create(schedule=schedule, fire_time=timezone.now(), outcome="enqueued"),
        Alert: Alert.objects.create(rule="backlog", subject="maintenance", summary="proof"),
        AuditEvent: AuditEvent.objects.create(
            action="pause", via="command", target_type="queue", target_id="maintenance"
        ),
        ShareWeight: ShareWeight.objects.create(user=world.user_b.user, weight=2, note="proof"),
    }
    return rows


def _may(check: Callable[..., bool], row: Any, request: Any) -> bool:
    return check(request, row)


def _admin_pages(world: World) -> list[tuple[str, Callable[[Any], bool]]]:
    """Every admin page with whether a staff operator may open it (from the ModelAdmin's own permissions)."""
    rows = _admin_rows(world)
    missing = set(admin.site._registry) - set(rows)
    assert not missing, f"add a row for the admin of {missing}"
    pages: list[tuple[str, Callable[[Any], bool]]] = [(reverse("admin:index"), lambda request: True)]
    for app_label in sorted({model._meta.app_label for model in admin.site._registry}):
        pages.append((reverse("admin:app_list", args=[app_label]), lambda request: True))
    for model, model_admin in admin.site._registry.items():
        name = f"admin:{model._meta.app_label}_{model._meta.model_name}"
        row = rows[model]
        pages += [
            (reverse(f"{name}_changelist"), model_admin.has_view_or_change_permission),
            (reverse(f"{name}_add"), model_admin.has_add_permission),
            (
                reverse(f"{name}_change", args=[row.pk]),
                partial(_may, model_admin.has_view_or_change_permission, row),
            ),
            (
                reverse(f"{name}_delete", args=[row.pk]),
                partial(_may, model_admin.has_delete_permission, row),
            ),
            (
                reverse(f"{name}_history", args=[row.pk]),
                partial(_may, model_admin.has_view_or_change_permission, row),
            ),
        ]
    return pages


def test_staff_without_model_permissions_sees_the_admin_index_but_no_model_page(world: World) -> None:
    # Given a staff member who is not a superuser and holds no model permission
    client = Client()
    client.force_login(cast(Any, UserFactory(is_staff=True)))
    pages = _admin_pages(world)
    campaign_delete = reverse("admin:campaigns_campaign_delete", args=[_draft_campaign(world).pk])
    # When they open every admin page (the draft campaign's delete page has its own test below)
    answers = {url: client.get(url).status_code for url, _ in pages if url != campaign_delete}
    # Then the index answers (and lists nothing); app pages do not exist for them; model pages are forbidden
    assert answers.pop(reverse("admin:index")) == 200
    app_pages = {url for url in answers if url.count("/") == 3}
    assert {answers.pop(url) for url in app_pages} == {404}
    assert set(answers.values()) == {403}, {url: code for url, code in answers.items() if code != 403}


def test_staff_without_delete_permission_cannot_delete_a_draft_campaign(world: World) -> None:
    # Given a draft campaign and a staff member with no campaigns permission
    campaign = _draft_campaign(world)
    client = Client()
    client.force_login(cast(Any, UserFactory(is_staff=True)))
    # When they post the admin's delete confirmation
    response = client.post(reverse("admin:campaigns_campaign_delete", args=[campaign.pk]), {"post": "yes"})
    # Then they are refused and the campaign is still there
    assert response.status_code == 403
    assert Campaign.objects.filter(pk=campaign.pk).exists()


@pytest.mark.parametrize("role", ROLES)
def test_admin_pages_are_for_staff_only(world: World, role: str) -> None:
    # Given every admin page
    pages = _admin_pages(world)
    client = Client()
    user = _user(world, role)
    if user is not None:
        client.force_login(user)
    request = RequestFactory().get("/admin/")
    request.user = user
    wrong = []
    for url, staff_may in pages:
        # When the role opens the page
        response = client.get(url)
        # Then staff gets the page (or 403 where the admin refuses that action); anyone else goes to the login
        if role == "staff":
            expected = 200 if staff_may(request) else 403
            ok = response.status_code == expected
        else:
            expected = 302
            ok = response.status_code == 302 and response["Location"].startswith(reverse("admin:login"))
        if not ok:
            wrong.append(f"{url}: {response.status_code}, expected {expected}")
    assert not wrong, "\n".join(wrong)
