"""Regressions for bad input that ended in a 500 before: each now answers 400 naming the field."""

from __future__ import annotations

from rest_framework.test import APIClient

from exports.models import Export
from jobs.models import Job
from tests.proof.conftest import World


def _staff_client(world: World) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {world.staff_token}")
    return client


def test_idempotency_key_with_a_nul_character_is_refused_naming_the_header(world: World) -> None:
    # Given a job request whose Idempotency-Key carries a NUL (PostgreSQL text cannot store it)
    jobs_before = Job.objects.count()
    # When it is posted
    response = _staff_client(world).post(
        "/api/jobs/canary", {"queue": "maintenance"}, format="json", HTTP_IDEMPOTENCY_KEY="key\x00one"
    )
    # Then it is a 400 naming the header, and no job is recorded
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["errors"]
    assert Job.objects.count() == jobs_before


def test_export_text_filter_with_a_nul_character_is_refused_naming_the_filter(world: World) -> None:
    # Given an export whose text filter carries a NUL (PostgreSQL jsonb cannot store it)
    exports_before = Export.objects.count()
    payload = {"query_params": {"dataset": "jobs", "filters": {"type": "canary\x00"}}}
    # When it is requested
    response = _staff_client(world).post("/api/jobs/csv-export", payload, format="json")
    # Then it is a 400 naming the filter, and no export is recorded
    assert response.status_code == 400
    assert "type" in str(response.json()["errors"]["query_params"])
    assert Export.objects.count() == exports_before
