"""Live progress over WebSocket: a real uvicorn, real worker pools, a real `websockets` client."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from jobs.dispatch.services import cancel_job
from jobs.models import JobStatus
from jobs.web.realtime.consumers import CLOSE_NOT_FOUND, CLOSE_UNAUTHENTICATED
from tests.factories import api_token
from tests.jobs.helpers import start, wait_terminal
from tests.web_server import WebServer, session_cookie

pytestmark = pytest.mark.slow

# Bounds a test waits for one message; reaching one fails the test (a bounded poll, not a threshold).
RECV_TIMEOUT_S = 30.0


def canary_for(user: Any, **payload: Any) -> Any:
    return start("canary", user, queue="maintenance", **payload)


@contextmanager
def socket(server: WebServer, path: str, *, token: str = "", session_of: Any = None) -> Iterator[ClientConnection]:
    headers = {"Cookie": f"sessionid={session_cookie(session_of)}"} if session_of is not None else None
    query = f"?token={token}" if token else ""
    with connect(f"{server.ws_url}{path}{query}", additional_headers=headers, open_timeout=RECV_TIMEOUT_S) as ws:
        yield ws


def receive(ws: ClientConnection) -> dict[str, Any]:
    return json.loads(ws.recv(timeout=RECV_TIMEOUT_S))  # type: ignore[no-any-return]


def snapshots(ws: ClientConnection) -> list[dict[str, Any]]:
    """What the socket sends before ``{"type": "live"}``: the state of its jobs when it subscribed."""
    received = [receive(ws)]
    while received[-1]["type"] != "live":
        received.append(receive(ws))
    return received[:-1]


def receive_until(ws: ClientConnection, done: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
    messages = [receive(ws)]
    while not done(messages[-1]):
        messages.append(receive(ws))
    return messages


def completed(job: Any) -> Callable[[dict[str, Any]], bool]:
    return lambda message: message["job_id"] == str(job.id) and message["status"] == JobStatus.COMPLETED


def close_code(ws: ClientConnection) -> tuple[int | None, list[str]]:
    """Everything received until the server closed the socket, and the close code."""
    received = []
    try:
        while True:
            received.append(str(ws.recv(timeout=RECV_TIMEOUT_S)))
    except ConnectionClosed as closed:
        return (closed.rcvd.code if closed.rcvd else None), received


def progress_in_order(messages: list[dict[str, Any]], steps: int) -> bool:
    """The canary's progress events: at least two, each step once, in order, each at its percentage."""
    seen = [m["data"]["step"] for m in messages if m["type"] == "progress"]
    percents = [m["progress"] for m in messages if m["type"] == "progress"]
    return len(seen) >= 2 and seen == sorted(set(seen)) and percents == [step * 100 // steps for step in seen]


@pytest.fixture
def warm_pool(pools: Callable[..., Any]) -> Any:
    """A maintenance pool that has already run a job (its state writer is up)."""
    pool = pools("maintenance")
    wait_terminal(start("canary", None, queue="maintenance"))
    return pool


def test_stream_receives_start_progress_in_order_and_completion(web_server, warm_pool, user):
    # Given the owner on their job stream, signed in with an API token
    token = api_token(user)
    with socket(web_server, "/ws/jobs/", token=token) as ws:
        assert snapshots(ws) == []
        # When a canary of five steps runs
        job = canary_for(user, seconds=1, steps=5)
        messages = receive_until(ws, completed(job))

    # Then the client saw it start, every step in order, and complete
    statuses = [m["status"] for m in messages if m["type"] == "status"]
    assert statuses == ["active", "completed"], [(m["type"], m["status"], m["progress"]) for m in messages]
    assert progress_in_order(messages, 5)
    assert messages[-1]["progress"] == 100


def test_job_socket_sends_the_snapshot_then_progress_in_order(web_server, pools, user):
    # Given a waiting canary of five steps and its owner watching it with an API token
    job = canary_for(user, seconds=1, steps=5)
    token = api_token(user)
    with socket(web_server, f"/ws/jobs/{job.id}/", token=token) as ws:
        [first] = snapshots(ws)
        # When a worker starts and runs it
        pools("maintenance")
        messages = receive_until(ws, completed(job))

    # Then the client first got the job as it stood, then its steps in order and the completion.
    # (Not asserted: "active". A booting worker's first claims can miss the state writer, which
    # the mirror starts in after_worker_boot, after Dramatiq's threads already consume.)
    assert first == {
        "type": "snapshot",
        "job_id": str(job.id),
        "job_type": "canary",
        "status": "queued",
        "progress": 0,
        "data": {},
        "error": "",
    }
    assert progress_in_order(messages, 5)
    assert (messages[-1]["status"], messages[-1]["progress"]) == ("completed", 100)


def test_a_user_receives_nothing_of_another_users_job(web_server, pools, user, other_user):
    # Given another user signed in by session, on their job stream and on the first user's job
    job = canary_for(user, seconds=0.5, steps=3)
    with (
        socket(web_server, "/ws/jobs/", session_of=other_user) as stream,
        socket(web_server, f"/ws/jobs/{job.id}/", session_of=other_user) as foreign,
        socket(web_server, f"/ws/jobs/{job.id}/", session_of=user) as owner,
    ):
        # Then the socket on someone else's job is closed with "not found", before any data
        assert close_code(foreign) == (CLOSE_NOT_FOUND, [])
        assert snapshots(stream) == []
        assert [m["type"] for m in snapshots(owner)] == ["snapshot"]

        # When the first user's job runs to the end, and then one of the other user's own
        pools("maintenance")
        receive_until(owner, completed(job))
        own = canary_for(other_user, steps=1)
        seen = receive_until(stream, completed(own))

    # Then the other user's stream carried only their own job
    assert {message["job_id"] for message in seen} == {str(own.id)}


def test_staff_stream_receives_every_users_jobs(web_server, warm_pool, user, staff):
    # Given staff on the all-jobs stream (signed in by token)
    token = api_token(staff)
    with socket(web_server, "/ws/jobs/", token=token) as stream:
        snapshots(stream)
        # When a user's job runs
        job = canary_for(user, steps=2)
        seen = receive_until(stream, completed(job))

    # Then staff saw its start and its completion
    statuses = [m["status"] for m in seen if m["job_id"] == str(job.id) and m["type"] == "status"]
    assert statuses == ["active", "completed"]


def test_failure_reaches_the_socket_with_its_reason(web_server, pools, user):
    # Given a canary that fails for good, watched by its owner
    job = canary_for(user, fail="permanent")
    with socket(web_server, f"/ws/jobs/{job.id}/", session_of=user) as ws:
        snapshots(ws)
        # When a worker runs it
        pools("maintenance")
        messages = receive_until(ws, lambda message: message["status"] == JobStatus.FAILED)

    # Then the client is told it failed, and why
    assert "canary failed on request (permanent)" in messages[-1]["error"]


def test_cancel_of_a_waiting_job_reaches_the_socket(web_server, user):
    # Given a waiting job (no worker) watched by its owner
    job = canary_for(user)
    with socket(web_server, f"/ws/jobs/{job.id}/", session_of=user) as ws:
        assert [m["status"] for m in snapshots(ws)] == [JobStatus.QUEUED]
        # When it is cancelled (a Job transition method, outside any worker)
        cancel_job(job)
        event = receive(ws)

    # Then the client hears it at once
    assert (event["type"], event["status"], event["error"]) == ("status", "cancelled", "cancelled before it ran")


def test_late_client_first_receives_the_current_state(web_server, pools, user):
    # Given a job that already finished
    pools("maintenance")
    job = wait_terminal(canary_for(user, steps=4))

    # When its owner connects (session auth)
    with socket(web_server, f"/ws/jobs/{job.id}/", session_of=user) as ws:
        [snapshot] = snapshots(ws)

    # Then the first message is the job as it stands
    assert snapshot["type"] == "snapshot"
    assert (snapshot["status"], snapshot["progress"]) == ("completed", 100)
    assert snapshot["data"]["message"] == "Step 4 of 4"


@pytest.mark.parametrize("token", ["", "not-a-token"])
def test_socket_without_valid_credentials_is_closed_unauthenticated(web_server, user, token):
    job = canary_for(user)
    with socket(web_server, f"/ws/jobs/{job.id}/", token=token) as ws:
        assert close_code(ws) == (CLOSE_UNAUTHENTICATED, [])


@pytest.mark.parametrize("path", ["/ws/jobs/00000000-0000-0000-0000-000000000000/", "/ws/jobs/not-a-job-id/"])
def test_socket_on_an_unknown_job_is_closed_not_found(web_server, user, path):
    with socket(web_server, path, session_of=user) as ws:
        assert close_code(ws) == (CLOSE_NOT_FOUND, [])
