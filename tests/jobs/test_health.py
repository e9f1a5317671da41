"""``/workers/health``: public, per queue, 503 when a queue has no live worker."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from jobs.models import JobStatus
from tests.jobs.helpers import canary, wait_terminal
from tests.workers import wait_for


def _health(client: APIClient):
    response = client.get("/workers/health")
    return response.status_code, response.json()


@pytest.mark.slow
def test_health_is_503_until_every_queue_has_a_worker_and_200_after(pools):
    client = APIClient()  # anonymous: the endpoint is public
    status, body = _health(client)
    assert status == 503
    assert body["queues"]["maintenance"]["live_workers"] == 0
    started = [pools(queue, threads=1) for queue in body["queues"]]
    wait_for(lambda: _health(client)[0] == 200, timeout=30, what="every queue to report a live worker")
    assert wait_terminal(canary()).status == JobStatus.COMPLETED
    status, body = _health(client)
    assert body["ok"] is True and body["redis"] == "ok" and body["database"] == "ok"
    assert body["queues"]["maintenance"]["last_canary_latency_ms"] is not None
    # When the only worker of a queue stops, health turns 503 again
    started[0].stop()
    wait_for(lambda: _health(client)[0] == 503, timeout=30, what="the stopped queue to be reported")


def test_health_has_no_secrets(db, clean_redis):
    body = APIClient().get("/workers/health").content.decode()
    for secret in ("postgres://", "redis://", "SECRET", "password"):
        assert secret not in body
