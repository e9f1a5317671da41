"""``GET /metrics``: Prometheus text behind a bearer token, parsed with prometheus_client's own parser."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from jobs.dispatch.canaries import send_canaries
from jobs.models import Job, JobStatus

TOKEN = "metrics-test-token"


@pytest.fixture
def metrics_on(settings: Any) -> str:
    settings.METRICS_TOKEN = TOKEN
    return TOKEN


def _scrape() -> dict[str, Any]:
    response = Client().get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    return {family.name: family for family in text_string_to_metric_families(response.content.decode())}


def _value(family: Any, sample_name: str, **labels: str) -> float:
    matches = [
        sample.value
        for sample in family.samples
        if sample.name == sample_name and all(sample.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(matches) == 1, (sample_name, labels, family.samples)
    return float(matches[0])


def _job(job_type: str, queue: str, status: str, *, run_s: float = 0.0, attempts: int = 1) -> Job:
    now = timezone.now()
    return Job.objects.create(
        type=job_type,
        queue=queue,
        actor="test",
        status=status,
        attempts=attempts,
        created_at=now - timedelta(minutes=1),
        started_at=now - timedelta(seconds=run_s),
        finished_at=now if status in (JobStatus.COMPLETED, JobStatus.FAILED) else None,
    )


def test_metrics_report_jobs_depth_durations_retries_workers_and_canary_latency(
    metrics_on, transactional_db, clean_redis
):
    # Given finished jobs of two types, a retried one, and waiting canaries in Redis
    _job("csv-export", "csv-export", JobStatus.COMPLETED, run_s=0.3)
    _job("csv-export", "csv-export", JobStatus.COMPLETED, run_s=20)
    _job("csv-export", "csv-export", JobStatus.FAILED, run_s=1, attempts=2)
    _job("thumbnails", "thumbnails", JobStatus.COMPLETED, run_s=2)
    send_canaries(["maintenance"])
    send_canaries(["maintenance"])
    # When Prometheus scrapes
    families = _scrape()
    # Then jobs are counted by queue and status
    finished = families["conveyor_jobs_finished"]
    customer = {"origin": "customer"}
    assert _value(finished, "conveyor_jobs_finished", queue="csv-export", status="completed", **customer) == 2
    assert _value(finished, "conveyor_jobs_finished", queue="csv-export", status="failed", **customer) == 1
    unfinished = families["conveyor_jobs_unfinished"]
    assert _value(unfinished, "conveyor_jobs_unfinished", queue="maintenance", status="queued") == 2
    # Queue depth comes from Redis
    assert _value(families["conveyor_queue_depth"], "conveyor_queue_depth", queue="maintenance") == 2
    # Durations per type as a histogram of completed jobs
    durations = families["conveyor_job_duration_seconds"]
    assert _value(durations, "conveyor_job_duration_seconds_count", type="csv-export") == 2
    assert _value(durations, "conveyor_job_duration_seconds_bucket", type="csv-export", le="0.5") == 1
    assert _value(durations, "conveyor_job_duration_seconds_bucket", type="csv-export", le="30.0") == 2
    assert _value(durations, "conveyor_job_duration_seconds_sum", type="csv-export") == pytest.approx(20.3, abs=0.1)
    assert _value(durations, "conveyor_job_duration_seconds_count", type="thumbnails") == 1
    # Retries, workers and canary latency
    retries = families["conveyor_job_retries"]
    assert _value(retries, "conveyor_job_retries", queue="csv-export", origin="customer") == 1
    assert _value(families["conveyor_workers"], "conveyor_workers", queue="maintenance") == 0
    assert _value(families["conveyor_redis_up"], "conveyor_redis_up") == 1
    assert "conveyor_canary_latency_seconds" in families


def test_canary_latency_is_exported_in_seconds(metrics_on, db, clean_redis):
    now = timezone.now()
    Job.objects.create(
        type="canary",
        queue="email-sender",
        actor="canary_email_sender",
        status=JobStatus.COMPLETED,
        created_at=now - timedelta(seconds=2),
        started_at=now - timedelta(seconds=1.5),
        finished_at=now,
    )
    latency = _scrape()["conveyor_canary_latency_seconds"]
    assert _value(latency, "conveyor_canary_latency_seconds", queue="email-sender") == pytest.approx(0.5, abs=0.01)


def test_metrics_need_the_bearer_token(metrics_on, db):
    client = Client()
    missing = client.get("/metrics")
    assert missing.status_code == 401 and "Bearer" in missing.json()["detail"]
    assert missing["WWW-Authenticate"].startswith("Bearer")
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer not-the-token")
    assert wrong.status_code == 403 and wrong.json()["detail"]
    other_scheme = client.get("/metrics", HTTP_AUTHORIZATION=f"Token {TOKEN}")
    assert other_scheme.status_code == 401


def test_metrics_are_off_without_a_token(settings, db):
    settings.METRICS_TOKEN = ""
    response = Client().get("/metrics", HTTP_AUTHORIZATION="Bearer anything")
    assert response.status_code == 404 and "METRICS_TOKEN" in response.json()["detail"]
