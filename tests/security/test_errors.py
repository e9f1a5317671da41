"""Security: a job's owner reads a readable reason, never internals (issue #16, point 7, first item).

Against the real server (uvicorn) and a real worker pool: a job whose actor
hits a raw database error (invalid SQL, or a connection error whose text
holds a connection string with a password) fails. Its owner reads the job
through ``GET /api/jobs/<id>`` and its live events over the WebSocket: the
reason is readable and holds no traceback, no driver text, no password.
Staff still find the traceback, with the driver's text, on the admin's job page.
"""

from __future__ import annotations

import html
import json
from typing import Any

import pytest
import requests
from websockets.sync.client import connect

from jobs.core.exceptions import UNEXPECTED_ERROR
from jobs.dispatch.services import build_job, create_jobs
from jobs.models import Job, JobStatus
from tests.factories import UserFactory
from tests.jobs.helpers import wait_terminal
from tests.testapp.tasks import FAKE_DB_PASSWORD
from tests.web_server import WebServer, session_cookie

pytestmark = pytest.mark.slow

# Bounds a test waits for one WebSocket message; reaching it fails the test.
RECV_TIMEOUT_S = 30.0

# What each way of failing puts in the driver's text, which only staff may read.
DRIVER_TEXT = {
    "sql": ["conveyor_no_such_table", "secret_column", "ProgrammingError"],
    "dsn": ["db.internal", f"password={FAKE_DB_PASSWORD}", "OperationalError"],
}


def _failing_job(owner: Any, kind: str) -> Job:
    job = build_job(
        job_type="test-database-error",
        queue="maintenance",
        actor="test_hit_database_error",
        arguments={"queue": "maintenance", "kind": kind},
        owner=owner,
    )
    return create_jobs([job])[0]


def _live_events_until_failed(server: WebServer, owner: Any, job: Job, start_worker: Any) -> list[dict[str, Any]]:
    """Every message of the job's WebSocket, subscribed before it runs, until it failed."""
    headers = {"Cookie": f"sessionid={session_cookie(owner)}"}
    received: list[dict[str, Any]] = []
    with connect(f"{server.ws_url}/ws/jobs/{job.id}/", additional_headers=headers, open_timeout=RECV_TIMEOUT_S) as ws:
        received.append(json.loads(ws.recv(timeout=RECV_TIMEOUT_S)))
        while received[-1]["type"] != "live":
            received.append(json.loads(ws.recv(timeout=RECV_TIMEOUT_S)))
        start_worker()
        while received[-1].get("status") != JobStatus.FAILED:
            received.append(json.loads(ws.recv(timeout=RECV_TIMEOUT_S)))
    return received


@pytest.mark.parametrize("kind", ["sql", "dsn"])
def test_a_raw_database_error_reaches_its_owner_as_a_readable_reason_and_staff_as_a_traceback(web_server, pools, kind):
    # Given a tenant's job whose actor will hit a raw database error, and the tenant watching it live
    owner = UserFactory()
    job = _failing_job(owner, kind)

    # When a worker runs it (two attempts on this queue) and it fails
    events = _live_events_until_failed(web_server, owner, job, lambda: pools("maintenance", threads=1))
    job = wait_terminal(job)
    assert job.status == JobStatus.FAILED

    # Then the owner's API view gives a readable reason, with no traceback, driver text or password
    response = requests.get(
        f"{web_server.url}/api/jobs/{job.id}", cookies={"sessionid": session_cookie(owner)}, timeout=30
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["error"].startswith(UNEXPECTED_ERROR), body["error"]
    assert "traceback" not in body
    seen_by_owner = response.text + json.dumps(events)
    for leak in ["Traceback", "password", FAKE_DB_PASSWORD, *DRIVER_TEXT[kind]]:
        assert leak not in seen_by_owner, leak
    # (the attempt history and the live "retrying" and "failed" events say the same)
    assert [attempt["error"] for attempt in body["attempt_history"]] == [UNEXPECTED_ERROR, body["error"]]
    assert [e["error"] for e in events if e.get("status") == JobStatus.FAILED] == [body["error"]]

    # And a superuser finds the traceback, with the driver's text, on the admin's job page
    admin = UserFactory(is_staff=True, is_superuser=True)
    page = requests.get(
        f"{web_server.url}/admin/jobs/job/{job.id}/change/", cookies={"sessionid": session_cookie(admin)}, timeout=30
    )
    assert page.status_code == 200
    text = html.unescape(page.text)
    assert "Traceback (most recent call last)" in text
    for detail in DRIVER_TEXT[kind]:
        assert detail in text, detail
