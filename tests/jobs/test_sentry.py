"""Sentry: worker errors are reported, tagged with the job's id and type (a local HTTP server is the DSN).

The filter itself (``before_send``) is checked here on events built in the
test; tests/security/test_sentry.py checks what real workers send.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import pytest
from dramatiq.middleware.shutdown import Shutdown

from jobs.core.exceptions import (
    JobCancelled,
    PermanentJobError,
    Reschedule,
    TransientJobError,
    note_retry,
)
from jobs.models import JobStatus
from jobs.worker.middleware.sentry_tags import SENTRY_DENYLIST, before_send
from tests.jobs.helpers import canary, wait_terminal
from tests.webhooks import sentry_events
from tests.workers import wait_for


@pytest.mark.slow
def test_worker_errors_reach_sentry_tagged_with_the_job(webhook, pools):
    # Given a worker pool reporting to a Sentry DSN served by a local HTTP server
    dsn = f"http://publickey@127.0.0.1:{webhook.port}/1"
    pools("maintenance", threads=1, env={"SENTRY_DSN": dsn})
    # When a canary fails for good
    job = wait_terminal(canary("maintenance", fail="permanent"))
    assert job.status == JobStatus.FAILED

    # Then Sentry receives an event tagged with the job's id and type
    def tagged() -> list[dict[str, Any]]:
        return [event for event in sentry_events(webhook) if event.get("tags", {}).get("job_id") == str(job.pk)]

    (event,) = wait_for(tagged, 30, what="the Sentry event of the failed job")
    assert event["tags"]["job_type"] == "canary"
    assert event["tags"]["queue"] == "maintenance"
    assert "CanaryFailedPermanently" in json.dumps(event["exception"])


def _raised(exc: BaseException) -> dict[str, Any]:
    try:
        raise exc
    except BaseException:
        return {"exc_info": sys.exc_info()}


def _event(text: str = "boom") -> dict[str, Any]:
    return {"exception": {"values": [{"type": "X", "value": text}]}, "contexts": {}}


def _retried(exc: BaseException) -> BaseException:
    note_retry(exc)
    return exc


@pytest.mark.parametrize(
    "exc",
    [
        JobCancelled("cancelled while running"),
        Reschedule(5, "rate limited"),
        Shutdown("worker shutting down"),
        _retried(TransientJobError("smtp away")),
    ],
    ids=["cancel", "reschedule", "shutdown", "retry"],
)
def test_expected_outcomes_are_not_sent(exc):
    assert before_send(_event(), _raised(exc)) is None


@pytest.mark.parametrize(
    "exc",
    [
        PermanentJobError("bad input"),
        TransientJobError("smtp away on the last attempt"),
        _retried(KeyError("an unexpected error is reported even when retried")),
    ],
    ids=["permanent", "transient-out-of-attempts", "unexpected-retried"],
)
def test_failures_are_sent(exc):
    assert before_send(_event(), _raised(exc)) is not None


def test_the_worker_log_of_an_actor_error_is_left_to_the_dramatiq_integration():
    record = logging.LogRecord(
        "dramatiq.worker.WorkerThread",
        logging.ERROR,
        "",
        0,
        "Failed to process message %s with unhandled exception.",
        ("m",),
        None,
    )
    hint = {**_raised(PermanentJobError("bad")), "log_record": record}
    assert before_send(_event(), hint) is None
    other = logging.LogRecord("jobs.ops.reconciler", logging.ERROR, "", 0, "Could not reconcile", (), None)
    assert before_send(_event(), {**_raised(KeyError("x")), "log_record": other}) is not None


def test_secrets_are_filtered_from_every_string_and_every_secret_key():
    event = {
        "exception": {"values": [{"value": "could not connect to postgres://conveyor:hunter2@db:5432/conveyor"}]},
        "contexts": {"dramatiq": {"data": {"kwargs": {"database_url": "postgres://x:y@h/d", "password": "hunter2"}}}},
        "breadcrumbs": {"values": [{"message": "libpq: host=db password=hunter2 user=conveyor"}]},
        "extra": {"spec": "ExportSpec(database={'user': 'conveyor', 'password': 'hunter2'})"},
        "request": {"headers": {"Authorization": "Token abc123", "Accept": "application/json"}},
    }

    sent = before_send(event, {})

    text = json.dumps(sent)
    assert "hunter2" not in text and "abc123" not in text and "x:y@" not in text
    assert "postgres://[Filtered]@db:5432/conveyor" in text
    assert sent["request"]["headers"]["Accept"] == "application/json"


def test_the_scrubber_denylist_names_the_settings_that_hold_secrets():
    for name in ("password", "secret", "token", "key", "dsn", "database_url", "redis_url", "aws_secret_access_key"):
        assert name in SENTRY_DENYLIST
    assert {"authorization", "cookie"} <= set(SENTRY_DENYLIST)
